"""What the run learned, shown at the end of `ft train` on the synthetic tasks: exact match of greedy
answers to held-out prompts, untrained (adapter off) and trained, with a few sample answers. Also
saved in all_results.json (exact_match, base_exact_match)."""

from ft import data
from ft.config import registry
from ft.data import templates
from ft.finish.evaluate import call_question, generate_answers, is_right, untrained

PROMPTS = 100  # held-out prompts scored
SAMPLES = 3  # of them shown with their answers
LABELS = {"exact_match": "exact match", "tool_call_exact_match": "tool-call exact match (function and arguments)"}


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
    questions = {"exact_match": rows}
    if templates.has_tool_calls(eval_rows):  # the first call of each conversation, then its final answer
        called = [row for row in rows if any(m.get("tool_calls") for m in row["messages"])]
        questions = {"tool_call_exact_match": [call_question(row, tokenizer) for row in called], **questions}
    model.eval()
    metrics = {}
    for name, asked in questions.items():
        longest = max(len(tokenizer(row["messages"][-1]["content"]).input_ids) for row in asked)
        generate = dict(device=trainer.args.device, max_new_tokens=longest + 1, batch_size=32)
        answers = generate_answers(model, tokenizer, asked, **generate)
        with untrained(model) as base_model:
            base_answers = generate_answers(base_model, tokenizer, asked, **generate)
        metrics[f"base_{name}"] = sum(map(is_right, base_answers, asked)) / len(asked)
        metrics[name] = sum(map(is_right, answers, asked)) / len(asked)
        print(
            f"ft: {LABELS[name]} on {len(asked)} held-out prompts: {100 * metrics[f'base_{name}']:.1f}% (untrained) "
            f"-> {100 * metrics[name]:.1f}% (trained)",
            flush=True,
        )
        for row, answer in list(zip(asked, answers))[:SAMPLES]:
            expected = row["messages"][-1]["content"].strip()
            verdict = "right" if is_right(answer, row) else f"expected {expected!r}"
            print(f"ft:   {row['messages'][0]['content']!r} -> {answer.strip()!r} ({verdict})", flush=True)
    trainer.save_metrics("exact_match", metrics)
    return metrics
