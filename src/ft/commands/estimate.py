"""`python -m ft estimate recipe=NAME [key=value ...]`: the memory a recipe is expected to take per device,
from the model's config alone (no weights loaded), as a table: one row per component and a total.

The arithmetic is ft.models.memory's (docs/memory.md); this module decides the device it is for, finds
the model's config and prints.
"""

from dataclasses import dataclass

from ft.config import registry
from ft.config.schema import FtConfig
from ft.errors import FtError
from ft.models import memory
from ft.options import option
from ft.run import distributed, hardware


@dataclass(kw_only=True)
class EstimateOptions:
    gpu_memory_gb: float | None = option(
        None, gt=0, metavar="GB", help="say whether the estimate fits a card with this much memory; unset: no verdict"
    )
    device: str = option(
        "auto",
        choices=["auto", "cuda", "cpu"],
        help="the device trained on, which decides precision=auto, checkpointing and the runtime row; "
        "auto: this machine's (cuda: a bf16-capable card)",
    )


def machine(device: str) -> hardware.Hardware:
    if device == "auto":
        return hardware.detect()
    if device == "cuda":
        return hardware.Hardware("cuda", bf16=True, num_gpus=0)
    return hardware.Hardware("cpu", bf16=False, num_gpus=0)


def model_config(cfg: FtConfig):
    """The transformers config: the tiny model's, a local directory's or a cached hub model's, or the one ft
    ships for the hub ids its recipes name (ft.models.published)."""
    from ft import models
    from ft.models import published

    name = cfg.model.name_or_path
    shipped = published.config(name) if cfg.model.revision is None else None
    if shipped is not None:
        return shipped
    try:
        return models.load_config(cfg.model)
    except OSError:
        raise FtError(
            f"model.name_or_path={name}: its config.json is not available offline (not a local directory, not in "
            "the Hugging Face cache) and ft ships none for it: download the model once or point model.name_or_path "
            "at a local directory"
        ) from None


def world_size(cfg: FtConfig, hw: hardware.Hardware) -> int:
    """Processes that share the sharded state: distributed.num_processes (or this machine's GPUs) x machines."""
    strategy = cfg.distributed.strategy
    if strategy not in memory.SHARDED:
        return 1
    if cfg.distributed.num_processes is None and hw.num_gpus == 0:
        raise FtError(
            f"estimate: distributed={strategy} shards its state over the processes: set distributed.num_processes=N "
            "(this machine has no GPU to count)"
        )
    return distributed.processes_per_machine(cfg.distributed, hw.num_gpus) * cfg.distributed.num_machines


def method(cfg: FtConfig) -> str:
    if cfg.peft.method == "none":
        return "full fine-tune"
    name = {"lora": "LoRA", "ia3": "IA3", "adalora": "AdaLoRA", "llama_adapter": "Llama-Adapter"}[cfg.peft.method]
    if cfg.peft.load_in_4bit:
        return "QLoRA (4-bit base)" if cfg.peft.method == "lora" else f"{name} on a 4-bit base"
    return f"{name} on an 8-bit base" if cfg.peft.load_in_8bit else name


def estimate(cfg: FtConfig, options: EstimateOptions) -> str:
    """The table `ft estimate` prints."""
    head = registry.get(cfg.task).head
    if head not in ("causal_lm", "sequence_classification"):
        raise FtError(f"estimate sizes language models; task={cfg.task} trains {registry.HEAD_NAMES[head]}")
    hw = machine(options.device)
    setting = memory.Setting(
        device=hw.device,
        precision=hardware.precision(cfg.training.precision, hw),
        checkpointing=hardware.activation_checkpointing(cfg.training.activation_checkpointing, hw),
        world_size=world_size(cfg, hw),
    )
    runtime_row = runtime(hw.device)  # first: on a CPU it measures this process before the model is built
    config = model_config(cfg)
    census = memory.count(cfg, config, head)
    rows = memory.components(cfg, config, census, setting, head)
    model_total = sum(row.gib for row in rows)
    total = model_total + runtime_row.gib
    lines = [
        f"ft: estimated memory per device (an estimate: docs/memory.md) for {cfg.recipe or 'the default recipe'}: "
        f"{cfg.model.name_or_path} ({census.total:,} parameters), {method(cfg)}, {setting.precision} on "
        f"{hw.device}, distributed={cfg.distributed.strategy}",
        *table([*rows, memory.Component("model total", model_total, ""), runtime_row], total),
    ]
    if options.gpu_memory_gb is not None:
        lines.append(verdict(total, options.gpu_memory_gb))
    if registry.get(cfg.task).name != "sft":
        lines.append(
            f"note: counted as one forward and backward of batch x max_length tokens, as SFT trains; task={cfg.task}'s "
            "extra passes (pairs, a reference or teacher model, generation) are not counted"
        )
    return "\n".join(lines)


def verdict(total: float, card: float) -> str:
    if total <= card:
        return f"fits a {card:g} GB card ({card - total:.2f} GiB to spare)"
    return f"does not fit a {card:g} GB card ({total - card:.2f} GiB short)"


def table(rows: list[memory.Component], total: float) -> list[str]:
    width = max(len(row.name) for row in rows)
    lines = [f"  {'component':<{width}}  {'GiB':>6}  how"]
    lines += [f"  {row.name:<{width}}  {row.gib:>6.2f}  {row.detail}".rstrip() for row in rows]
    return [*lines, f"  {'total':<{width}}  {total:>6.2f}"]


def runtime(device: str) -> memory.Component:
    """What the process holds besides the model's memory: on a CPU measured here, on a GPU the CUDA context."""
    if device == "cpu":
        return memory.Component(
            "runtime", cpu_runtime_gib(), "Python, torch and libraries: resident after importing them"
        )
    return memory.Component(
        "CUDA context", memory.CUDA_CONTEXT_GIB, "outside torch's allocator (max_memory_allocated); varies"
    )


def cpu_runtime_gib() -> float:
    """The resident memory of a process that has imported what a training run imports, before its model and
    data: measured in this process (so call it before anything big is allocated here)."""
    import contextlib
    import importlib
    import importlib.util
    import io

    # transformers' Trainer imports DeepSpeed when it is installed (which logs to stdout); ft plots the loss
    optional = [name for name in ("deepspeed", "matplotlib.pyplot") if importlib.util.find_spec(name.split(".")[0])]
    with contextlib.redirect_stdout(io.StringIO()):
        for name in ("torch", "transformers", "datasets", "peft", "accelerate", "trl", *optional):
            importlib.import_module(name)
        from trl import SFTTrainer  # noqa: F401  (trl is lazy: this imports the trainer's modules)
    return hardware.peak_resident_gib()
