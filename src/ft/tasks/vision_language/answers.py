"""Greedy answers about images, and what the run learned: at the end of `ft train` on the synthetic
shapes, the exact match of the answers to held-out questions, untrained (adapter off) and trained."""

from ft.finish.evaluate import untrained

PROMPTS = 100  # held-out questions scored
SAMPLES = 3  # of them shown with their answers


def prompts(conversations: list[list[dict]], images: list[list]) -> list[list[dict]]:
    """Each conversation (typed parts) with its image parts filled from `images`, as the processor takes it."""
    from trl.data_utils import prepare_multimodal_messages

    return [prepare_multimodal_messages(turns, images=list(shown)) for turns, shown in zip(conversations, images)]


def generate(
    model, processor, conversations: list[list[dict]], images: list[list], max_new_tokens: int, device, **sampling
):
    """The model's answer to each conversation (typed parts; its image parts filled from `images`): greedy,
    unless `sampling` (model.generate's settings) says otherwise."""
    import torch

    processor.tokenizer.padding_side = "left"  # generation continues each prompt's right end
    inputs = processor.apply_chat_template(
        prompts(conversations, images),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    ).to(device)
    settings = dict(do_sample=False, top_p=None, top_k=None) | sampling
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, **settings)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def expected(row) -> str:
    return "".join(part["text"] or "" for part in row["messages"][-1]["content"] if part["type"] == "text").strip()


def exact_match(model, processor, rows: list[dict], device, batch_size: int = 16) -> tuple[float, list[str]]:
    answers = []
    longest = max(len(processor.tokenizer(expected(row)).input_ids) for row in rows)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        answers += generate(
            model, processor, [r["messages"][:-1] for r in chunk], [r["images"] for r in chunk], longest + 1, device
        )
    right = sum(answer.strip() == expected(row) for answer, row in zip(answers, rows))
    return right / len(rows), answers


def report(cfg, trainer) -> dict:
    """Score, print and save on the synthetic shapes' eval split; {} elsewhere, or with
    training.report_exact_match off."""
    if not cfg.training.report_exact_match or cfg.data.source != "synthetic" or trainer.eval_dataset is None:
        return {}
    model, processor = trainer.model, trainer.processing_class
    rows = [trainer.eval_dataset[i] for i in range(min(PROMPTS, len(trainer.eval_dataset)))]
    model.eval()
    trained, answers = exact_match(model, processor, rows, trainer.args.device)
    with untrained(model) as base_model:
        base, _ = exact_match(base_model, processor, rows, trainer.args.device)
    print(
        f"ft: exact match on {len(rows)} held-out image questions: {100 * base:.1f}% (untrained) -> "
        f"{100 * trained:.1f}% (trained)",
        flush=True,
    )
    for row, answer in list(zip(rows, answers))[:SAMPLES]:
        question = " ".join(p["text"] for p in row["messages"][0]["content"] if p["type"] == "text")
        verdict = "right" if answer.strip() == expected(row) else f"expected {expected(row)!r}"
        print(f"ft:   {question!r} -> {answer.strip()!r} ({verdict})", flush=True)
    metrics = {"base_exact_match": base, "exact_match": trained}
    trainer.save_metrics("exact_match", metrics)
    return metrics
