"""Rules on the config alone: values that must agree with each other, and names that must be well formed."""

from pathlib import Path

from ft.config import registry
from ft.config.schema import SYNTHETIC_TASKS, SYNTHETIC_TOOL_TASKS, TINY_MODEL, FtConfig
from ft.errors import FtError
from ft.models import adapters


def check_combinations(cfg: FtConfig) -> None:
    """Rules on values and combinations that the schema's types cannot express. Loads nothing."""
    model = cfg.model
    if model.name_or_path != TINY_MODEL and not Path(model.name_or_path).expanduser().is_dir():
        check_repo_id(model.name_or_path, "model.name_or_path", "a local model directory")

    data = cfg.data
    if data.source == "synthetic" and not data.synthetic.tasks:
        raise FtError(f"data.synthetic.tasks is empty: choose some of {', '.join(SYNTHETIC_TASKS)}")
    tool_tasks = [name for name in data.synthetic.tasks if name in SYNTHETIC_TOOL_TASKS]
    formats = registry.get(cfg.task).formats
    # only a task that trains on whole conversations (not one that reads their opening turns as prompts)
    if data.source == "synthetic" and tool_tasks and (formats[:1] != ("messages",) or "prompts" in formats):
        raise FtError(
            f"data.synthetic.tasks {tool_tasks} are tool-calling conversations, which task={cfg.task} does not "
            f"train on: they are supervised data (recipe=tiny_tools)"
        )
    entries = [(f"data.sources[{i}].source", entry.source) for i, entry in enumerate(data.sources)]
    for key, source in entries or [("data.source", data.source)]:
        if source != "synthetic" and not Path(source).expanduser().exists():
            if source.startswith((".", "/", "~")) or Path(source).suffix:
                raise FtError(f"{key}: no such file or directory '{source}'")
            check_repo_id(source, key, "a local file or directory, or 'synthetic'")

    training = cfg.training
    if training.max_steps <= 0 and training.num_train_epochs <= 0:
        raise FtError("set training.max_steps > 0 or training.num_train_epochs > 0")
    if training.resume not in ("auto", "never") and not Path(training.resume).expanduser().is_dir():
        raise FtError(f"training.resume={training.resume}: not auto, never, or an existing checkpoint directory")
    if training.run_name is not None and (
        not training.run_name.strip(". ") or Path(training.run_name).name != training.run_name
    ):
        raise FtError(
            f"training.run_name='{training.run_name}' must be a plain directory name (no '/'): "
            f"put the parent directory in training.output_dir"
        )
    if cfg.hub.push and not cfg.hub.repo_id:
        raise FtError("hub.push=true needs hub.repo_id=owner/name")
    if cfg.hub.repo_id:
        check_repo_id(cfg.hub.repo_id, "hub.repo_id")
    check_techniques(cfg)
    check_peft(cfg.peft)


def check_techniques(cfg: FtConfig) -> None:
    """Optimizer / packing / callback combinations. Hardware needs (CUDA, flash-attn, Liger) are
    checked by ft.rules.machine when training starts, so GPU recipes compose anywhere."""
    optim, training, callbacks = cfg.optim, cfg.training, cfg.callbacks
    if optim.name.startswith("galore"):
        if cfg.peft.method != "none":
            raise FtError(
                f"optim.name={optim.name}: GaLore is a full-parameter optimizer and cannot train a PEFT adapter "
                f"(peft.method={cfg.peft.method}): use peft=none, or another optimizer (e.g. optim=adamw_8bit)"
            )
        if not optim.target_modules:
            raise FtError(
                f"optim.name={optim.name} needs optim.target_modules (the Linear layers to project, e.g. [q_proj, "
                "v_proj])"
            )
        if optim.name.endswith("layerwise") and training.gradient_accumulation_steps != 1:
            raise FtError(
                f"optim.name={optim.name} steps during backward and cannot accumulate gradients: set "
                "training.gradient_accumulation_steps=1"
            )
    elif optim.target_modules:
        raise FtError(
            f"optim.target_modules is for GaLore optimizers only (optim.name={optim.name}): remove it or use "
            "optim=galore"
        )
    if training.padding_free and not training.packing:
        raise FtError(
            "training.padding_free=true without packing would not enforce training.max_length: set "
            "training.packing=true (bfd packing is padding-free)"
        )
    needs_eval = [
        name
        for name, on in (
            ("callbacks.sample_prompts", bool(callbacks.sample_prompts)),
            ("callbacks.early_stopping_patience", callbacks.early_stopping_patience is not None),
        )
        if on
    ]
    if needs_eval and (training.eval_strategy == "no" or (cfg.data.eval_size == 0 and cfg.data.eval_split is None)):
        raise FtError(
            f"{needs_eval[0]} acts at evaluation time, but this run never evaluates: set training.eval_strategy=steps "
            "and data.eval_size > 0"
        )


def check_peft(peft) -> None:
    """PEFT method combinations; architecture rules that need the model's config are in ft.models.adapters."""
    import importlib.util

    quantized = adapters.is_quantized(peft)
    if peft.load_in_4bit and peft.load_in_8bit:
        raise FtError(
            "peft.load_in_4bit and peft.load_in_8bit are both true: choose one (peft=qlora or peft=qlora_8bit)"
        )
    if quantized and importlib.util.find_spec("bitsandbytes") is None:
        raise FtError(
            "a quantized base (peft.load_in_4bit / load_in_8bit) needs bitsandbytes: pip install 'bitsandbytes>=0.45' "
            "(or pip install -e '.[quant]')"
        )
    if quantized and peft.method == "none":
        raise FtError(
            "a full fine-tune cannot train a 4-bit/8-bit quantized base: use peft=qlora (an adapter on the quantized "
            "base) or set peft.load_in_4bit=false peft.load_in_8bit=false"
        )
    lora_variants = {
        "use_dora": peft.use_dora,
        "loraplus_lr_ratio": peft.loraplus_lr_ratio,
        "init_lora_weights": peft.init_lora_weights if peft.init_lora_weights is not True else None,
    }
    for key, value in lora_variants.items():
        if value and peft.method != "lora":
            raise FtError(
                f"peft.{key}={value} is a LoRA variant but peft.method={peft.method}: use peft.method=lora or unset it"
            )
    if peft.use_rslora and peft.method not in ("lora", "adalora"):
        raise FtError(f"peft.use_rslora is a LoRA variant but peft.method={peft.method}: use peft.method=lora")
    if str(peft.init_lora_weights).lower().startswith("pissa") and quantized:
        raise FtError(
            "PiSSA needs full-precision base weights to decompose: drop peft.load_in_4bit/load_in_8bit or use "
            "peft=qlora"
        )
    if peft.method == "adalora" and peft.target_r > peft.init_r:
        raise FtError(
            "AdaLoRA prunes ranks from peft.init_r down to peft.target_r: need target_r <= init_r, got "
            f"{peft.target_r} and {peft.init_r}"
        )


def check_repo_id(repo_id: str, key: str = "repo_id", alternative: str | None = None) -> None:
    """A well-formed Hub id (owner/name); `alternative` names what else the key may be."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        if alternative:
            raise FtError(f"{key}='{repo_id}' is neither a hub id (owner/name) nor {alternative}") from None
        raise FtError(
            f"{key}='{repo_id}' is not a valid Hub repo id: use owner/name, e.g. {key}=alice/my-adapter"
        ) from None
