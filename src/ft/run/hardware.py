"""What the machine offers, and the precision / checkpointing choices that follow from it.

TRL's SFTConfig defaults to bf16 and activation checkpointing, which on a CPU either raise or run
2.6x slower; ft always decides both explicitly from here.
"""

from dataclasses import dataclass

from ft.errors import FtError


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda" | "cpu"
    bf16: bool  # bf16 matmuls supported in hardware
    num_gpus: int


def detect() -> Hardware:
    import torch

    if torch.cuda.is_available():
        return Hardware("cuda", torch.cuda.is_bf16_supported(), torch.cuda.device_count())
    return Hardware("cpu", False, 0)


def precision(requested: str, hw: Hardware) -> str:
    """fp32 | bf16 | fp16 for the run."""
    if requested == "auto":
        if hw.device == "cpu":
            return "fp32"
        return "bf16" if hw.bf16 else "fp16"
    if requested in ("bf16", "fp16") and hw.device == "cpu":
        raise FtError(
            f"training.precision={requested} needs a GPU; this machine has none: use training.precision=auto (fp32 on "
            "CPU)"
        )
    if requested == "bf16" and not hw.bf16:
        raise FtError("training.precision=bf16: this GPU has no bf16 support: use training.precision=fp16 or auto")
    return requested


def torch_dtype(model_dtype: str, run_precision: str):
    """The dtype to load weights in: model.dtype, or with `auto` the run's precision."""
    import torch

    name = (
        model_dtype
        if model_dtype != "auto"
        else {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[run_precision]
    )
    return getattr(torch, name)


def activation_checkpointing(requested: bool | None, hw: Hardware) -> bool:
    return hw.device == "cuda" if requested is None else requested


def peak_resident_gib() -> float:
    """This process's resident high-water mark. On Linux from /proc/self/status (VmHWM), which belongs to the
    running program alone: getrusage's ru_maxrss survives fork and exec, so a run started by a large parent
    (a notebook, a test runner, a sweep) would report at least the parent's size."""
    import resource
    import sys

    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20  # kB
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB elsewhere
