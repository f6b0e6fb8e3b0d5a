"""`data.sources`: several sources mixed into one training set, deterministically from data.seed.

Each source is read and converted to TRL's form on its own (its format, columns and splits), then:
a source with `num_examples` gives exactly that many rows (repeating its rows when it has fewer), the
weighted sources share their total row count in proportion to their weights, the others give all their
rows once; the rows of all sources are concatenated and shuffled. Eval: the `eval_only` sources if any
(all their rows), otherwise each source's eval_split or data.eval_size rows carved out of each source.
"""

import dataclasses

from ft.data import convert, detect
from ft.errors import FtError


def load(cfg, task: str):
    """(train, eval or None) of the mixture in TRL's form."""
    carve = not any(entry.eval_only for entry in cfg.sources)
    parts, evals = [], []
    for index, entry in enumerate(cfg.sources):
        one = detect.source_config(cfg, entry)
        if one.format == "auto":  # data.load called before the formats were resolved (ft.data.detect)
            one = dataclasses.replace(one, format=detect.source_format(one, task, f"data.sources[{index}]"))
        train, evaluation = convert.load_splits(one, carve=carve and not entry.eval_only)
        if entry.eval_only:  # all of its train split, or its eval_split
            evals.append(train if evaluation is None else evaluation)
            continue
        parts.append((entry, train))
        if evaluation is not None:
            evals.append(evaluation)
    if not parts:
        raise FtError("every entry of data.sources is eval_only: at least one must give training rows")
    rows = _counts(parts)
    train = _concatenate([_take(part, count, cfg.seed + i) for i, ((_, part), count) in enumerate(zip(parts, rows))])
    train = train.shuffle(seed=cfg.seed).flatten_indices()
    evaluation = _concatenate(evals) if evals else None
    return train, evaluation


def _counts(parts) -> list[int]:
    """Training rows per source: num_examples, a share of the weighted total by weight, or all of it."""
    weighted = [(entry.weight, len(rows)) for entry, rows in parts if entry.num_examples is None and entry.weight]
    total, weights = sum(n for _, n in weighted), sum(w for w, _ in weighted)
    counts = []
    for entry, rows in parts:
        if entry.num_examples is not None:
            counts.append(entry.num_examples)
        elif entry.weight:
            counts.append(max(1, round(total * entry.weight / weights)))
        else:
            counts.append(len(rows))
    return counts


def _take(rows, count: int, seed: int):
    """`count` rows of `rows`: a seeded shuffle, repeated as often as needed."""
    shuffled = rows.shuffle(seed=seed)
    repeats = [shuffled] * (count // len(rows)) + [shuffled.select(range(count % len(rows)))]
    return _concatenate([part for part in repeats if len(part)])


def _concatenate(parts):
    from datasets import concatenate_datasets

    if any("train" in convert.turn_keys(part) for part in parts):  # one source has per-turn training flags
        parts = [convert.with_turn_flags(part) for part in parts]
    try:
        return concatenate_datasets(parts)
    except ValueError as e:  # e.g. plain-text preference pairs mixed with conversational ones
        reason = str(e).splitlines()[0]
        raise FtError(
            f"the rows of data.sources cannot be put in one dataset ({reason}): give them the same form"
        ) from None
