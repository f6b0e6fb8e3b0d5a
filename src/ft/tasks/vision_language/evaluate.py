"""`ft eval run_dir=...` on a vision-language run: the exact match of greedy answers to the run's held-out image
questions (its eval split, made again from config.yaml as training made it), trained and untrained (the same
loaded model with the adapter switched off). Exact match is what a vision-language run is scored by on any
data, not only the synthetic shapes: there is no eval loss here to stand beside it."""

import sys

from ft.errors import FtError


def held_out(cfg, limit: int | None) -> list[dict]:
    """The first `limit` rows (all with None) of the run's eval split, in TRL's vision form."""
    from ft.tasks.vision_language import data

    (_, evaluation), _ = data.load(cfg.data)
    if evaluation is None:
        raise FtError(
            "the run's recipe has no eval split (data.eval_size=0, no data.eval_split): nothing to evaluate on"
        )
    count = len(evaluation) if limit is None else min(limit, len(evaluation))
    return [evaluation[i] for i in range(count)]


def evaluate(options, cfg, run_dir) -> dict:
    """{'examples': N, 'trained': {...}, 'base': {...}}, each with exact_match, exact_match_correct and
    exact_match_total, printed as a table. options: ft.finish.evaluate.EvalOptions (max_examples and
    exact_match_examples both limit the questions scored; max_new_tokens does not apply: an answer may be
    one token longer than the longest expected one)."""
    from ft.finish.evaluate import untrained
    from ft.tasks.vision_language import answers
    from ft.tasks.vision_language.generate import Session

    limits = [n for n in (options.max_examples, options.exact_match_examples) if n]
    if options.exact_match_examples <= 0:
        raise FtError("exact_match_examples=0 leaves nothing to score: a vision-language run is scored by exact match")
    rows = held_out(cfg, min(limits) if limits else None)
    session = Session(run_dir)
    size = options.batch_size or 16

    def measure(model) -> dict:
        share, _ = answers.exact_match(model, session.processor, rows, session.model.device, batch_size=size)
        correct = round(share * len(rows))
        return {"exact_match": share, "exact_match_correct": correct, "exact_match_total": len(rows)}

    results = {"examples": len(rows), "trained": measure(session.model)}
    if options.base:
        with untrained(session.model) as base_model:
            results["base"] = measure(base_model)
    print_report(results, cfg, run_dir)
    return results


def print_report(results: dict, cfg, run_dir) -> None:
    print(f"ft: eval of {run_dir} on {results['examples']} held-out image questions of {cfg.data.source}")
    print(f"{'':<24}{'exact match':>20}")
    for name, measured in (("base model (untrained)", results.get("base")), ("trained", results["trained"])):
        if measured is not None:
            share, correct, total = (measured[k] for k in ("exact_match", "exact_match_correct", "exact_match_total"))
            print(f"{name:<24}{f'{100 * share:.1f}% ({correct}/{total})':>20}")
    sys.stdout.flush()
