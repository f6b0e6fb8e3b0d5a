"""The model card: README.md in the run dir, with Hub metadata front-matter.

Written at the end of training (replacing the stub PEFT's save_pretrained leaves there). It says
what was trained on what, how, on which hardware, with which results, holds the loss curve and the
resolved recipe, and a usage snippet that runs as is: it loads the base model and the adapter and
prompts through the chat template saved with the tokenizer — the one training used.
"""

import math
import re
from pathlib import Path

import yaml

from ft import data
from ft.run import rundir

# The snippet's line naming where the weights are; `ft push` points it at the repo.
ADAPTER_LINE = re.compile(r'^(adapter|model_dir) = ".*?"', re.MULTILINE)


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from ft.config.schema import TINY_MODEL

    if name in (TINY_MODEL, "synthetic") or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
        return True
    except HFValidationError:
        return False


def metadata(cfg, base_model: str) -> dict:
    is_adapter = cfg.peft.method != "none"
    tags = ["ft", "trl", cfg.task] + ([cfg.peft.method, "peft"] if is_adapter else ["full-fine-tune"])
    meta = {
        "base_model": base_model,
        "library_name": "peft" if is_adapter else "transformers",
        "pipeline_tag": "text-generation",
        "tags": tags,
    }
    if _is_hub_id(cfg.data.source):
        meta["datasets"] = [cfg.data.source]
    if cfg.hub.license:
        meta["license"] = cfg.hub.license
    return meta


def example_prompt(cfg) -> str:
    if cfg.data.source == "synthetic":
        from ft.data import synthetic

        return synthetic.generate(list(cfg.data.synthetic.tasks), 1, seed=cfg.data.synthetic.seed + 1)[0]["messages"][
            0
        ]["content"]
    return "Hello! What can you do?"


def usage_snippet(cfg, base_model: str, adapter: str) -> str:
    prompt = example_prompt(cfg)
    if cfg.peft.method == "none":
        load = (
            f'model_dir = "{adapter}"  # this run\'s directory, or the Hub repo id it was pushed to\n'
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)  # carries the chat template used in training\n"
            'model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map="auto")\n'
        )
        imports = "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
    else:
        load = (
            f'base_model = "{base_model}"\n'
            f'adapter = "{adapter}"  # this run\'s directory, or the Hub repo id it was pushed to\n'
            "tokenizer = AutoTokenizer.from_pretrained(adapter)  # carries the chat template used in training\n"
            'model = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto", device_map="auto")\n'
            "model = PeftModel.from_pretrained(model, adapter)\n"
        )
        imports = "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
    if data.is_conversational(cfg.data.format):
        messages = ([{"role": "system", "content": cfg.data.system_prompt}] if cfg.data.system_prompt else []) + [
            {"role": "user", "content": prompt}
        ]
        encode = (
            f"messages = {messages!r}\n"
            "inputs = tokenizer.apply_chat_template(\n"
            '    messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"\n'
            ").to(model.device)\n"
        )
    else:  # trained on raw text / prompt-completion pairs: no chat template
        encode = f'inputs = tokenizer({prompt!r}, return_tensors="pt").to(model.device)\n'
    generate = (
        "output = model.generate(**inputs, max_new_tokens=64)\n"
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))\n'
    )
    return imports + "\n" + load + "\n" + encode + generate


# Each task's own eval metrics (TRL's names without eval_), shown at the start and trained when present.
METHOD_METRICS = {
    "rewards/accuracies": "held-out preference accuracy (implicit reward of chosen > rejected)",
    "rewards/margins": "mean implicit reward margin, chosen - rejected",
    "accuracy": "held-out pairwise accuracy (chosen scored higher)",
    "margin": "mean reward margin, chosen - rejected",
    "reward": "mean reward on held-out prompts",
}


def _method_rows(metrics: dict) -> list[str]:
    rows = []
    for key, label in METHOD_METRICS.items():
        if f"eval_{key}" in metrics:
            rows.append(f"| {label}, at the start | {_fmt(metrics.get(f'base_{key}'))} |")
            rows.append(f"| {label}, trained | {_fmt(metrics[f'eval_{key}'])} |")
    return rows


def _exact_match_rows(metrics: dict) -> list[str]:
    """The end-of-run exact match on held-out synthetic prompts (ft.finish.answers), as `ft train` prints it."""
    if "exact_match" not in metrics:
        return []
    rows = []
    for key, label in (("base_exact_match", "untrained base"), ("exact_match", "trained")):
        value = metrics.get(key)
        shown = f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "—"
        rows.append(f"| exact match of greedy answers to held-out prompts, {label} | {shown} |")
    return rows


def peak_memory_text(metrics: dict) -> str | None:
    """'1.85 GiB (resident memory, per process)', or None when the run recorded none."""
    if "gpu_peak_memory_gb" in metrics:
        return f"{metrics['gpu_peak_memory_gb']:.2f} GiB (GPU memory allocated by torch, per process)"
    if "cpu_peak_rss_gb" in metrics:
        return f"{metrics['cpu_peak_rss_gb']:.2f} GiB (resident memory, per process)"
    return None


def peak_memory_clause(metrics: dict) -> str:
    """', peak memory ...' for a card's sentence, or '' when the run recorded none."""
    peak = peak_memory_text(metrics)
    return f", peak memory {peak}" if peak else ""


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def hardware(num_processes: int) -> str:
    import os

    import torch

    if torch.cuda.is_available():
        return f"{num_processes} process(es) on {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"{num_processes} process(es) on CPU ({os.cpu_count()} cores)"


def render(
    cfg,
    run_dir: Path,
    metrics: dict,
    log_history: list,
    train_size: int | None,
    eval_size: int | None,
    trainer_class: str,
    num_processes: int = 1,
    adapter_ref: str | None = None,
) -> str:
    from ft import models

    base_model = cfg.model.name_or_path if _is_hub_id(cfg.model.name_or_path) else models.resolve_path(cfg.model)
    adapter_ref = adapter_ref or cfg.hub.repo_id or str(Path(run_dir).resolve())
    t, p = cfg.training, cfg.peft
    train_losses = [row["loss"] for row in log_history if "loss" in row]
    eval_loss = metrics.get("eval_loss")
    method = (
        "full fine-tune"
        if p.method == "none"
        else (
            f"{p.method.upper()} r={p.r}, alpha={p.lora_alpha}, dropout={p.lora_dropout}, target modules "
            f"{p.target_modules}" + (f", fully trained modules {list(p.modules_to_save)}" if p.modules_to_save else "")
        )
    )
    steps = t.max_steps if t.max_steps > 0 else f"{t.num_train_epochs} epoch(s)"
    loss_on = (
        "assistant turns only" if t.assistant_only_loss and data.is_conversational(cfg.data.format) else "all tokens"
    )
    examples = "packed sequences" if t.packing else "examples"
    lines = [
        "---",
        yaml.safe_dump(metadata(cfg, base_model), sort_keys=False).strip(),
        "---",
        "",
        f"# {Path(run_dir).name}",
        "",
        f"A {'PEFT adapter' if p.method != 'none' else 'fine-tuned model'} for `{base_model}`, trained with "
        f"ft (TRL's {trainer_class} + PEFT) from the recipe "
        f"`{cfg.recipe}`.",
        "",
        "## Results",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| eval loss, untrained base | {_fmt(metrics.get('base_loss'))} |",
        f"| eval loss, trained | {_fmt(eval_loss)} |",
        f"| eval perplexity, trained | {_fmt(math.exp(eval_loss)) if eval_loss is not None else '—'} |",
        f"| final train loss (last logged) | {_fmt(train_losses[-1] if train_losses else None)} |",
        f"| mean train loss over the run | {_fmt(metrics.get('train_loss'))} |",
        *_method_rows(metrics),
        *_exact_match_rows(metrics),
        "",
        "![loss curve](loss.png)",
        "",
        "## Training",
        "",
        f"- **Method**: {method}",
        f"- **Hyperparameters**: {steps} steps, batch {t.per_device_train_batch_size} per device x "
        f"{t.gradient_accumulation_steps} accumulation x {num_processes} process(es), learning rate "
        f"{t.learning_rate} ({t.lr_scheduler_type}, warmup {t.warmup_steps}), optimizer {cfg.optim.name} "
        f"(weight decay {cfg.optim.weight_decay}), max length {t.max_length}, packing {t.packing}, "
        f"loss on {loss_on}, precision {t.precision}, seed {t.seed}",
        f"- **Data**: `{cfg.data.source}` ({cfg.data.format} format), {train_size if train_size is not None else '?'} "
        f"training {examples}, {eval_size if eval_size is not None else 0} eval examples",
        f"- **Hardware and time**: {hardware(num_processes)}, {_fmt(metrics.get('train_runtime'))} s of training"
        f"{peak_memory_clause(metrics)}",
        "",
        "## Usage",
        "",
        "```python",
        usage_snippet(cfg, base_model, adapter_ref).rstrip(),
        "```",
        "",
        'Or with ft: `python -m ft generate run_dir=<this directory> prompt="..."`, `python -m ft chat run_dir=...`,',
        "`python -m ft eval run_dir=...`.",
        "",
        *serving_section(cfg, base_model),
        *recipe_section(run_dir),
    ]
    return "\n".join(lines)


def serving_section(cfg, base_model: str) -> list[str]:
    """How to serve the run outside Python: ft export for llama.cpp/Ollama, and vLLM/SGLang for a LoRA adapter."""
    lines = [
        "## Serving",
        "",
        "llama.cpp, Ollama, LM Studio: `python -m ft export run_dir=<this directory>` writes a GGUF checked against "
        "transformers, with an Ollama Modelfile (the manual: Export).",
    ]
    if cfg.peft.method == "lora":
        lines += [
            "vLLM and SGLang serve the adapter as a LoRA module over the base "
            "(or `python -m ft export run_dir=<this directory> format=merged` for one merged model):",
            "",
            "```bash",
            f"vllm serve {base_model} --enable-lora --lora-modules adapter=<this directory>",
            f"python -m sglang.launch_server --model-path {base_model} --enable-lora "
            "--lora-paths adapter=<this directory>",
            "```",
        ]
    return [*lines, ""]


def recipe_section(run_dir: Path) -> list[str]:
    """The card's last section: the run's resolved config."""
    config_text = (Path(run_dir) / rundir.CONFIG).read_text().rstrip()
    return ["## Recipe", "", "The resolved config (also in `config.yaml`):", "", "```yaml", config_text, "```", ""]


def write(cfg, run_dir: Path, trainer, metrics: dict) -> Path:
    """README.md from a finished trainer (main process only)."""
    path = Path(run_dir) / "README.md"
    train_size = len(trainer.train_dataset) if trainer.train_dataset is not None else None
    eval_size = len(trainer.eval_dataset) if trainer.eval_dataset is not None else None
    path.write_text(
        render(
            cfg,
            run_dir,
            metrics,
            trainer.state.log_history,
            train_size,
            eval_size,
            type(trainer).__name__,
            num_processes=trainer.args.world_size,
        )
    )
    return path


def point_at_repo(card_text: str, repo_id: str) -> str:
    """The card with its usage snippet loading from `repo_id` instead of the local run dir."""
    return ADAPTER_LINE.sub(lambda m: f'{m.group(1)} = "{repo_id}"', card_text, count=1)
