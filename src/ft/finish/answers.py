"""What the run learned, shown at the end of `ft train` on the synthetic tasks: exact match of greedy
answers to held-out prompts, untrained (adapter off) and trained, with a few sample answers. Also
saved in all_results.json (exact_match, base_exact_match)."""

from ft import data
from ft.config import registry
from ft.finish.evaluate import generate_answers, is_right, untrained

PROMPTS = 100  # held-out prompts scored
SAMPLES = 3  # of them shown with their answers


def report(cfg, trainer) -> dict:
    """Score, print and save; {} where it does not apply (a task not scored on its answers, not synthetic
    data, no eval split, or a full fine-tune, whose untrained base is no longer in memory) or
    training.report_exact_match is off."""
    adapter = hasattr(trainer.model, "disable_adapter")
    if not cfg.training.report_exact_match:
        return {}
    if registry.get(cfg.task).evaluation != "answers" or cfg.data.source != "synthetic" or not adapter:
        return {}
    _, eval_rows = data.load(cfg.data, cfg.task)
    if not eval_rows or "messages" not in eval_rows.column_names:
        return {}
    rows = [eval_rows[i] for i in range(min(PROMPTS, len(eval_rows)))]
    tokenizer, model = trainer.processing_class, trainer.model
    text_config = model.config.get_text_config()
    if getattr(text_config, "output_router_logits", False):  # TRL's MoE load-balancing loss; generate fails with it
        text_config.output_router_logits = False
    longest = max(len(tokenizer(row["messages"][-1]["content"]).input_ids) for row in rows)
    generate = dict(device=trainer.args.device, max_new_tokens=longest + 1, batch_size=32)
    model.eval()
    answers = generate_answers(model, tokenizer, rows, **generate)
    with untrained(model) as base_model:
        base_answers = generate_answers(base_model, tokenizer, rows, **generate)
    metrics = {
        "base_exact_match": sum(map(is_right, base_answers, rows)) / len(rows),
        "exact_match": sum(map(is_right, answers, rows)) / len(rows),
    }
    print(
        f"ft: exact match on {len(rows)} held-out prompts: {100 * metrics['base_exact_match']:.1f}% (untrained) -> "
        f"{100 * metrics['exact_match']:.1f}% (trained)",
        flush=True,
    )
    for row, answer in list(zip(rows, answers))[:SAMPLES]:
        verdict = "right" if is_right(answer, row) else f"expected {row['messages'][-1]['content']!r}"
        print(f"ft:   {row['messages'][0]['content']!r} -> {answer.strip()!r} ({verdict})", flush=True)
    trainer.save_metrics("exact_match", metrics)
    return metrics
