"""Rules on scaling out: strategies, engines, quantized bases under sharding, the launch itself."""

import os

from ft.config.schema import FtConfig
from ft.errors import FtError
from ft.models import adapters
from ft.run.distributed import DEEPSPEED, FSDP, fsdp_launched


def check_config(cfg: FtConfig) -> None:
    """Rules on the config alone (no machine facts)."""
    dist = cfg.distributed
    if not 0 <= dist.machine_rank < dist.num_machines:
        raise FtError(f"distributed.machine_rank={dist.machine_rank} must be in [0, num_machines={dist.num_machines})")
    if cfg.callbacks.sample_prompts and dist.strategy in {"zero3", "zero3_offload"} | FSDP:
        raise FtError(
            f"callbacks.sample_prompts generates on rank 0 alone, which sharded weights (distributed={dist.strategy}) "
            "cannot do: drop the sample prompts, or use distributed=ddp/zero2"
        )
    _check_quantized(cfg)
    if dist.strategy in FSDP:
        _check_no_full_head_under_fsdp(cfg)


def _check_no_full_head_under_fsdp(cfg: FtConfig) -> None:
    """TRL computes the loss from lm_head.weight directly (its fused LM head), so FSDP2 never runs the head's
    hooks, and DTensor.full_tensor() hands each rank its own rows of the gradient instead of the average.
    Measured on 2 processes: the head's gradient 10% off a single process's, the LoRA gradients exact."""
    if cfg.peft.method != "none" and "lm_head" in (cfg.peft.modules_to_save or []):
        raise FtError(
            f"FSDP (distributed={cfg.distributed.strategy}) cannot train lm_head in full (peft.modules_to_save): TRL "
            "reads its weight directly and FSDP does not average that gradient across ranks; set "
            "peft.modules_to_save=null, or use distributed=ddp"
        )


def _check_quantized(cfg: FtConfig) -> None:
    """Which engines can shard a bitsandbytes-quantized base, and how."""
    strategy, peft = cfg.distributed.strategy, cfg.peft
    if not adapters.is_quantized(peft):
        if strategy == "fsdp_qlora":
            raise FtError(
                "distributed=fsdp_qlora shards a 4-bit base: use it with peft=qlora, or distributed=fsdp for a "
                "full-precision base"
            )
        return
    if strategy in ("zero3", "zero3_offload"):
        raise FtError(
            f"distributed={strategy} partitions every parameter, which bitsandbytes' quantized weights do not "
            "support: use distributed=zero2 or ddp for QLoRA (or fsdp_qlora on GPUs)"
        )
    if strategy in FSDP and peft.load_in_8bit:
        raise FtError(
            f"distributed={strategy} cannot shard an 8-bit base: use peft=qlora (4-bit) with distributed=fsdp_qlora"
        )
    if strategy == "fsdp":
        raise FtError(
            "FSDP over a 4-bit base needs its weights stored in the compute dtype: use distributed=fsdp_qlora"
        )
    storage, compute = peft.bnb_4bit_quant_storage, peft.bnb_4bit_compute_dtype
    if strategy == "fsdp_qlora" and "auto" not in (storage, compute) and storage != compute:
        raise FtError(
            f"distributed=fsdp_qlora needs peft.bnb_4bit_quant_storage equal to the compute dtype "
            f"({compute}), got {storage}: leave it at auto"
        )


def check_engine(cfg: FtConfig) -> None:
    """Inside launched processes: the engine accelerate started must be the one asked for."""
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    fsdp = fsdp_launched()
    if deepspeed and fsdp:
        raise FtError("DeepSpeed and FSDP are exclusive, and the accelerate launch enables both: keep one")
    strategy = cfg.distributed.strategy
    if (strategy in DEEPSPEED and fsdp) or (strategy in FSDP and deepspeed):
        launched = "FSDP" if fsdp else "DeepSpeed"
        raise FtError(
            f"distributed={strategy} but accelerate launched {launched}: drop distributed=... when "
            "using your own accelerate config, or launch with `python -m ft train distributed=...`"
        )
    if fsdp:  # an accelerate FSDP config of the user's own, which the config alone does not show
        _check_no_full_head_under_fsdp(cfg)


def check_launch(cfg: FtConfig, gpus: int) -> None:
    """Rules that need to know the machine (run before launching or loading anything)."""
    dist = cfg.distributed
    if dist.strategy in FSDP and gpus == 0:
        raise FtError(
            f"distributed={dist.strategy}: FSDP through Accelerate needs GPUs and this machine has none; "
            "use distributed=ddp (or zero2/zero3) with distributed.num_processes=N on CPU"
        )
    if dist.strategy in DEEPSPEED:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise FtError(f"distributed={dist.strategy} needs DeepSpeed: pip install 'ft[deepspeed]'") from None
    if dist.num_machines > 1 and not (cfg.training.run_name or os.environ.get("FT_RUN_DIR")):
        raise FtError(
            "a multi-node run needs one run directory shared by every node: set training.run_name=NAME "
            "(on a shared filesystem) or FT_RUN_DIR"
        )
