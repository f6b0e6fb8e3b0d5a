"""Datasets in, TRL's forms out.

A source (synthetic tasks, a local JSONL/JSON/Parquet/CSV file or directory, a hub dataset) is
read, its columns mapped to ft's field names (`data.columns`), and every row converted from its
format into one of TRL's dataset forms:

    conversational     {"messages": [{"role": ..., "content": ...}, ...]}   messages, alpaca, sharegpt
    prompt-completion  {"prompt": str, "completion": str}                 prompt_completion
    language modeling  {"text": str}                                      text
    preference         {"prompt", "chosen", "rejected"}: strings or turns    preference (ft.data.preference)
    unpaired           {"prompt", "completion", "label"}: label a bool       unpaired (ft.data.preference)
    prompts            {"prompt": str or turns, other columns kept}         prompts (ft.data.prompts)
"""

import contextlib
import json
import logging
from pathlib import Path

from ft.config.schema import DataConfig
from ft.data import preference, prompts, synthetic
from ft.errors import FtError

LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "system": "system",
}

# Fields each format reads: (required, optional). data.columns maps these names to source columns.
FIELDS = {
    "messages": (["messages"], []),
    "alpaca": (["instruction", "output"], ["input"]),
    "sharegpt": (["conversations"], []),
    "prompt_completion": (["prompt", "completion"], []),
    "text": (["text"], []),
    "preference": (["chosen", "rejected"], ["prompt"]),
    "unpaired": (list(preference.UNPAIRED_FIELDS), []),
    "prompts": (["prompt"], []),
}


def _from_messages(row, cfg):
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]}


def _from_alpaca(row, cfg):
    prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def _from_sharegpt(row, cfg):
    turns = []
    for turn in row["conversations"]:
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise FtError(
                f"sharegpt turn has unknown 'from' value '{turn['from']}': expected one of {', '.join(SHAREGPT_ROLES)}"
            )
        turns.append({"role": role, "content": turn["value"]})
    return {"messages": turns}


def _from_prompt_completion(row, cfg):
    return {"prompt": row["prompt"], "completion": row["completion"]}


def _from_text(row, cfg):
    return {"text": row["text"]}


CONVERTERS = {
    "messages": _from_messages,
    "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt,
    "prompt_completion": _from_prompt_completion,
    "text": _from_text,
    "preference": lambda row, cfg: preference.from_preference(row, cfg.system_prompt),
    "unpaired": lambda row, cfg: preference.from_unpaired(row, cfg.system_prompt),
    "prompts": lambda row, cfg: prompts.from_prompts(row, cfg.system_prompt),
}


def is_conversational(fmt: str) -> bool:
    return fmt in ("messages", "alpaca", "sharegpt")


def _check_conversation(messages: list[dict], system_prompt: str | None) -> list[dict]:
    roles = [m["role"] for m in messages]
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise FtError(f"unknown role '{bad[0]}': messages roles must be one of {', '.join(ROLES)}")
    if "assistant" not in roles:
        raise FtError("a conversation has no assistant turn, so nothing to learn: every row needs one")
    if "system" in roles[1:]:
        raise FtError(
            f"a system turn is only allowed first, found one at turn {roles.index('system', 1) + 1}: "
            f"move it to the start or fold it into a user turn"
        )
    first = next(r for r in roles if r != "system")
    if first != "user":
        raise FtError(
            f"a conversation must start with a user turn (after an optional system turn), not '{first}': "
            f"drop the leading {first} turn"
        )
    if system_prompt and roles[0] != "system":
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def load_raw(cfg: DataConfig):
    """The source as a DatasetDict (local files and synthetic data come as a single 'train' split)."""
    from datasets import Dataset, DatasetDict, load_dataset

    if cfg.source == "synthetic":
        make = {
            "preference": synthetic.generate_preferences,
            "unpaired": synthetic.generate_unpaired,
            "prompts": synthetic.generate_prompts,
        }.get(cfg.format, synthetic.generate)
        rows = make(list(cfg.synthetic.tasks), cfg.synthetic.num_examples, cfg.synthetic.seed)
        return DatasetDict({"train": Dataset.from_list(rows)})
    path = Path(cfg.source).expanduser()
    if not path.exists():
        try:
            return load_dataset(cfg.source, cfg.subset)
        except Exception as e:  # offline, missing, private: datasets raises many kinds
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FtError(
                f"cannot load the hub dataset data.source={cfg.source}: {reason}: check the id, "
                f"or download it and point data.source to a local file"
            ) from None
    files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_BUILDERS) if path.is_dir() else [path]
    builders = {LOCAL_BUILDERS.get(p.suffix) for p in files}
    if not files or None in builders or len(builders) > 1:
        raise FtError(
            f"data.source={cfg.source}: need .jsonl/.json/.parquet/.csv files of a single kind, found "
            f"{[p.name for p in files][:5]}"
        )
    builder = builders.pop()
    try:
        with _quiet_loaders():  # their ERROR log would precede ft's one-line error
            raw = load_dataset(builder, data_files=[str(p) for p in files])
    except Exception as e:
        if builder == "json":
            locate_bad_json(files)
        reason = (str(e.__cause__ or e).splitlines() or [type(e).__name__])[0]
        raise FtError(f"cannot read data.source={cfg.source}: {reason}") from None
    if all(len(split) == 0 for split in raw.values()):
        raise FtError(f"data.source={cfg.source} has no rows: point it to a file with training examples")
    return raw


@contextlib.contextmanager
def _quiet_loaders():
    loaders = logging.getLogger("datasets.packaged_modules")
    level = loaders.level
    loaders.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        loaders.setLevel(level)


def to_trl_form(dataset, cfg: DataConfig):
    """Rename mapped columns, check the format's fields are present, convert every row."""
    mapping = {src: ft_name for ft_name, src in cfg.columns.items() if src != ft_name}
    missing_sources = [src for src in mapping if src not in dataset.column_names]
    if missing_sources:
        raise FtError(
            f"data.columns names columns {missing_sources} that the data lacks; its columns: {dataset.column_names}"
        )
    dataset = dataset.rename_columns(mapping)
    required, optional = FIELDS[cfg.format]
    missing = [name for name in required if name not in dataset.column_names]
    if missing:
        raise FtError(
            f"data.format={cfg.format} needs column(s) {missing}; the data has {dataset.column_names}: "
            f"map them with data.columns, e.g. +data.columns.{missing[0]}=<column>"
        )
    convert = CONVERTERS[cfg.format]
    conversational = is_conversational(cfg.format)

    def convert_row(row, index):
        try:
            out = convert(row, cfg)
            if conversational:
                out["messages"] = _check_conversation(out["messages"], cfg.system_prompt)
            return out
        except FtError as e:
            raise FtError(f"data row {index}: {e}") from None
        except (KeyError, TypeError, AttributeError) as e:
            raise FtError(f"data row {index}: malformed {cfg.format} row ({type(e).__name__}: {e})") from None

    return dataset.map(convert_row, with_indices=True, remove_columns=dataset.column_names, desc="ft: converting")


def load(cfg: DataConfig):
    """(train, eval or None) datasets in TRL's form."""
    raw = load_raw(cfg)
    if cfg.train_split not in raw:
        raise FtError(f"data.train_split={cfg.train_split} is not a split of {cfg.source}; splits: {list(raw)}")
    if cfg.eval_split is not None and cfg.eval_split not in raw:
        raise FtError(f"data.eval_split={cfg.eval_split} is not a split of {cfg.source}; splits: {list(raw)}")
    train = to_trl_form(raw[cfg.train_split], cfg)
    if cfg.eval_split is not None:
        evaluation = to_trl_form(raw[cfg.eval_split], cfg)
    elif cfg.eval_size > 0:
        size = int(cfg.eval_size) if cfg.eval_size >= 1 else cfg.eval_size
        if len(train) < 2 or (isinstance(size, int) and size >= len(train)):
            raise FtError(f"data.eval_size={cfg.eval_size} leaves no training examples out of {len(train)}")
        split = train.train_test_split(test_size=size, seed=cfg.seed)
        train, evaluation = split["train"], split["test"]
    else:
        evaluation = None
    if cfg.max_examples is not None:
        train = train.select(range(min(cfg.max_examples, len(train))))
    if len(train) == 0:
        raise FtError(
            f"the training split of data.source={cfg.source} is empty (after the eval split and "
            f"data.max_examples): give it examples, raise data.max_examples or lower data.eval_size"
        )
    if evaluation is not None and len(evaluation) == 0:
        raise FtError(f"the eval split of data.source={cfg.source} is empty: give it examples, or set data.eval_size=0")
    return train, evaluation


def locate_bad_json(files: list[Path]) -> None:
    """Raise an FtError naming the file and line of the first malformed record (datasets' own error
    names neither). Called only after datasets failed to read the files, so good files cost nothing."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise FtError(f"{path}: not UTF-8 text (byte {e.start}): re-encode the file as UTF-8") from None
        if path.suffix == ".json":
            try:
                json.loads(text)
            except ValueError as e:
                raise FtError(
                    f"{path} line {e.lineno}: invalid JSON ({e.msg}, column {e.colno}): fix the file"
                ) from None
            continue
        rows = 0
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise FtError(
                    f"{path} line {number}: invalid JSON ({e.msg}, column {e.colno}): "
                    f"fix or remove that line (one JSON object per line)"
                ) from None
            if not isinstance(record, dict):
                raise FtError(
                    f"{path} line {number}: expected a JSON object, got {type(record).__name__}: "
                    f"write one {{...}} object per line"
                )
            rows += 1
        if rows == 0:
            raise FtError(f"{path} has no records: data.source needs at least one JSON object per line")
