"""What a config asks of this machine and its installed packages."""

from ft.errors import FtError
from ft.run.hardware import Hardware, precision


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def check_requirements(cfg, hw: Hardware) -> None:
    """What the config asks of this machine and its packages, checked before anything loads."""
    attn, optim = cfg.model.attn_implementation, cfg.optim.name
    precision(cfg.training.precision, hw)  # bf16 / fp16 need a GPU
    if attn == "flash_attention_2":
        if hw.device != "cuda":
            raise FtError(
                "model.attn_implementation=flash_attention_2 needs a CUDA GPU; this machine has none: use sdpa (the "
                "default) or eager"
            )
        if not installed("flash_attn"):
            raise FtError(
                "model.attn_implementation=flash_attention_2 needs flash-attn: pip install -e '.[gpu]', or use sdpa"
            )
    if cfg.training.use_liger_kernel:
        if hw.device != "cuda":
            raise FtError(
                "training.use_liger_kernel=true needs a CUDA GPU (Liger kernels are Triton); this machine has none: "
                "set it to false"
            )
        if not installed("liger_kernel"):
            raise FtError("training.use_liger_kernel=true needs liger-kernel: pip install -e '.[gpu]'")
    if optim.startswith("galore"):
        if not installed("galore_torch"):
            raise FtError(f"optim.name={optim} needs galore-torch: pip install galore-torch==1.0")
        if "8bit" in optim and hw.device != "cuda":
            raise FtError(
                f"optim.name={optim} (GaLore with 8-bit state) needs a CUDA GPU; this machine has none: use "
                "optim=galore"
            )
    if ("8bit" in optim or "bnb" in optim) and not installed("bitsandbytes"):
        raise FtError(f"optim.name={optim} needs bitsandbytes: pip install -e '.[quant]'")
    if "wandb" in cfg.logging.report_to:
        _check_wandb()
    if "mlflow" in cfg.logging.report_to and not installed("mlflow"):
        raise FtError("logging=mlflow needs mlflow: pip install -e '.[mlflow]', or use logging=tensorboard")
    rows = cfg.training.per_device_train_batch_size
    if cfg.training.packing and rows > 1 and attn != "flash_attention_2":
        # TRL's bfd packing flattens a batch into one sequence; only flash-attn's varlen kernel
        # attends within each packed example without paying for the whole flattened length.
        print(
            f"ft: warning: packing flattens the {rows} rows of a batch into one sequence of {rows} x max_length "
            f"tokens, and {attn} attention costs grow with its square (0.58x the unpacked throughput on a CPU, "
            "bench/packing.py): prefer training.per_device_train_batch_size=1 with more "
            "gradient_accumulation_steps, or model.attn_implementation=flash_attention_2 on a GPU",
            flush=True,
        )


def _check_wandb() -> None:
    import os
    from pathlib import Path

    if not installed("wandb"):
        raise FtError("logging=wandb needs wandb: pip install -e '.[wandb]', or use logging=tensorboard")
    if os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text()):
        raise FtError(
            "logging=wandb: no W&B credentials (WANDB_API_KEY or `wandb login`): log in, or set WANDB_MODE=offline to "
            "log to the run directory"
        )


def check_vllm(hw: Hardware, key: str) -> None:
    """`key`=true (e.g. grpo.use_vllm) asks for generation with vLLM: a CUDA GPU and the vllm package."""
    if hw.device != "cuda":
        raise FtError(
            f"{key}=true needs a CUDA GPU; this machine has none: set {key}=false (generation with transformers)"
        )
    if not installed("vllm"):
        raise FtError(f"{key}=true needs vllm: pip install vllm, or set {key}=false")
