"""The model card of a vision-language run: README.md, and beside it example.png, one of its held-out images,
which the card shows with its question and the trained model's answer. The card says what was trained on
which base, the held-out exact match (untrained and trained), the loss curve, and holds a usage snippet that
runs as is (AutoProcessor + AutoModelForImageTextToText + PeftModel, the chat template saved with the run's
processor, the example image) and the resolved recipe."""

import json
from pathlib import Path

import yaml

from ft.config import registry
from ft.finish import card
from ft.run import rundir

USAGE = """from peft import PeftModel
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.utils import cached_file

base_model = "{base}"
adapter = "{adapter}"  # this run's directory, or the Hub repo id it was pushed to
processor = AutoProcessor.from_pretrained(adapter)  # carries the chat template used in training
model = AutoModelForImageTextToText.from_pretrained(base_model, dtype="auto", device_map="auto")
model = PeftModel.from_pretrained(model, adapter)

image = Image.open({image}
messages = [
    {{"role": "user", "content": [{{"type": "image", "image": image}}, {{"type": "text", "text": {question}}}]}},
]
inputs = processor.apply_chat_template(
    messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
).to(model.device, dtype=model.dtype)
output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
print(processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
"""
DEFAULT_QUESTION = "Describe this image."


def example(dataset) -> dict | None:
    """The first row (a conversation, or a preference pair with its chosen answer) whose first turn asks about
    exactly one image: {'image', 'question', 'expected', 'turns'}; None when no row does."""
    from ft.tasks.vision_language import answers

    for index in range(len(dataset) if dataset is not None else 0):
        row = dataset[index]
        turns = row["messages"] if "messages" in row else [*row["prompt"], *row["chosen"]]  # a pair: its chosen
        first = turns[0]
        if first["role"] != "user" or len(turns) < 2 or turns[1]["role"] != "assistant":
            continue
        if sum(part["type"] == "image" for part in first["content"]) != 1 or not row["images"]:
            continue
        question = " ".join(p["text"] for p in first["content"] if p["type"] == "text" and p["text"]).strip()
        expected = answers.expected({"messages": turns[:2]})
        return {"image": row["images"][0], "question": question, "expected": expected, "turns": [first]}
    return None


def base_reference(cfg) -> str:
    """The base as the snippet loads it: a Hub id, or a local directory (a tiny-vlm-* model's build)."""
    from ft.tasks.vision_language import models

    path = models.resolve_path(cfg.model)
    return str(Path(path).resolve()) if Path(path).expanduser().is_dir() else path


def usage_snippet(base: str, adapter: str, question: str | None) -> str:
    """The card's Python: the run's example image and question, or (without one) an image of the reader's."""
    image = f'cached_file(adapter, "{rundir.EXAMPLE_IMAGE}"))  # the card\'s example, or an image of yours'
    if question is None:
        image = '"your-image.png")'
    return USAGE.format(base=base, adapter=adapter, image=image, question=json.dumps(question or DEFAULT_QUESTION))


def percent(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "—"


def number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def results_section(metrics: dict, log_history: list, scored: int) -> list[str]:
    from ft.tasks.vision_language import answers

    losses = [row["loss"] for row in log_history if "loss" in row]
    questions = f"{scored} held-out image questions" if scored else "held-out image questions"
    match = f"exact match of greedy answers to {questions}"
    rows = [
        f"| {match}, untrained base | {percent(metrics.get('base_exact_match'))} |",
        f"| {match}, trained | {percent(metrics.get('exact_match'))} |",
    ]
    if "preference_accuracy" in metrics:  # image DPO: chosen likelier than rejected, from where training started
        pairs = "held-out image pairs whose chosen answer is likelier than the rejected one"
        rows = [
            f"| {pairs}, at the start | {percent(metrics.get('base_preference_accuracy'))} |",
            f"| {pairs}, trained | {percent(metrics.get('preference_accuracy'))} |",
        ]
    rows += [
        f"| eval loss, untrained base | {number(metrics.get('base_loss'))} |",
        f"| eval loss, trained | {number(metrics.get('eval_loss'))} |",
        f"| final train loss (last logged) | {number(losses[-1] if losses else None)} |",
    ]
    note = (
        []
        if "exact_match" in metrics or "preference_accuracy" in metrics
        else ["", f"`python -m ft eval run_dir=<this directory>` scores up to {answers.PROMPTS} held-out questions."]
    )
    return ["## Results", "", "| metric | value |", "| --- | --- |", *rows, *note, "", "![loss curve](loss.png)", ""]


def example_section(shown: dict | None) -> list[str]:
    if shown is None:
        return []
    verdict = "right" if shown["answer"].strip() == shown["expected"] else f"expected `{shown['expected']}`"
    return [
        "## Example",
        "",
        f"![a held-out image]({rundir.EXAMPLE_IMAGE})",
        "",
        f"**{shown['question']}** The trained model answers `{shown['answer'].strip()}` ({verdict}).",
        "",
    ]


def is_preference(cfg) -> bool:
    """A run of task=vlm_dpo, whose section holds task=dpo's settings (beta) beside the vision ones."""
    return getattr(registry.get(cfg.task).settings(cfg), "beta", None) is not None


def training_section(cfg, train_size, eval_size, metrics: dict, num_processes: int) -> list[str]:
    from ft.models import adapters

    t, p, v = cfg.training, cfg.peft, registry.get(cfg.task).settings(cfg)
    method = "QLoRA" if adapters.is_quantized(p) else "LoRA"
    objective = "loss on the assistant's answers only (never image tokens or the questions)"
    if is_preference(cfg):
        objective = f"DPO (beta={v.beta}, {v.loss_type}) on chosen / rejected answers about images"
    reaches = "the language model's linear layers" + (" and the vision tower's" if v.lora_vision_tower else "")
    projector = "; the projector trained in full (saved with the adapter)" if v.train_projector else ""
    steps = t.max_steps if t.max_steps > 0 else f"{t.num_train_epochs} epoch(s)"
    return [
        "## Training",
        "",
        f"- **Method**: {method} r={p.r}, alpha={p.lora_alpha}, dropout={p.lora_dropout} on {reaches}"
        f"{projector}; {objective}",
        f"- **Hyperparameters**: {steps} steps, batch {t.per_device_train_batch_size} per device x "
        f"{t.gradient_accumulation_steps} accumulation x {num_processes} process(es), learning rate "
        f"{t.learning_rate} ({t.lr_scheduler_type}), optimizer {cfg.optim.name}, max length {t.max_length}, "
        f"precision {t.precision}, seed {t.seed}",
        f"- **Data**: `{cfg.data.source}`, {train_size if train_size is not None else '?'} training examples "
        f"about images, {eval_size or 0} held out",
        f"- **Hardware and time**: {card.hardware(num_processes)}, {number(metrics.get('train_runtime'))} s of "
        f"training{card.peak_memory_clause(metrics)}",
        "",
    ]


def render(
    cfg,
    run_dir: Path,
    metrics: dict,
    log_history: list,
    sizes: tuple,
    shown,
    num_processes: int = 1,
    trainer_name: str = "SFTTrainer",
) -> str:
    from ft.tasks.vision_language import answers

    base = base_reference(cfg)
    adapter = cfg.hub.repo_id or str(Path(run_dir).resolve())
    meta = card.metadata(cfg, base) | {"pipeline_tag": "image-text-to-text"}  # a hub data source, the license
    meta["tags"].append("vision-language")
    train_size, eval_size = sizes
    scored = min(answers.PROMPTS, eval_size) if "exact_match" in metrics and eval_size else 0
    snippet = usage_snippet(base, adapter, shown["question"] if shown else None)
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {Path(run_dir).name}",
        "",
        f"A vision-language LoRA adapter for `{base}` (AutoModelForImageTextToText), trained with ft (task={cfg.task}: "
        f"TRL's {trainer_name} + PEFT) from the recipe `{cfg.recipe}` on "
        f"{'image preference pairs' if is_preference(cfg) else 'conversations about images'}.",
        "",
        *example_section(shown),
        *results_section(metrics, log_history, scored),
        *training_section(cfg, train_size, eval_size, metrics, num_processes),
        "## Usage",
        "",
        "```python",
        snippet.rstrip(),
        "```",
        "",
        'Or with ft: `python -m ft generate run_dir=<this directory> image=PATH prompt="..."`, `python -m ft chat '
        "run_dir=...` (`/image PATH` shows an image), `python -m ft eval run_dir=...`, `python -m ft merge "
        "run_dir=...` (one model for AutoModelForImageTextToText).",
        "",
        *card.recipe_section(run_dir),
    ]
    return "\n".join(lines)


def write(cfg, run_dir: Path, trainer, metrics: dict) -> Path:
    """README.md and example.png from a finished trainer (main process only); the example is a held-out row
    (a training row without an eval split), answered by the trained model."""
    from PIL import Image

    from ft.tasks.vision_language import answers

    shown = example(trainer.eval_dataset if trainer.eval_dataset is not None else trainer.train_dataset)
    if shown is not None:
        image = shown["image"] if isinstance(shown["image"], Image.Image) else Image.open(shown["image"])
        image.convert("RGB").save(Path(run_dir) / rundir.EXAMPLE_IMAGE)
        model = trainer.model.eval()
        longest = len(trainer.processing_class.tokenizer(shown["expected"]).input_ids)
        shown["answer"] = answers.generate(
            model, trainer.processing_class, [shown["turns"]], [[image]], longest + 1, trainer.args.device
        )[0]
    sizes = tuple(len(d) if d is not None else None for d in (trainer.train_dataset, trainer.eval_dataset))
    path = Path(run_dir) / rundir.CARD
    text = render(
        cfg,
        run_dir,
        metrics,
        trainer.state.log_history,
        sizes,
        shown,
        num_processes=trainer.args.world_size,
        trainer_name=type(trainer).__name__,
    )
    path.write_text(text)
    return path
