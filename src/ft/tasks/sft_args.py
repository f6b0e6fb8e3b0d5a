"""ft's config -> TRL's SFTConfig: the shared TrainingArguments (ft.tasks.trainer_args) plus the
SFT-only settings (sequence length, packing, which tokens carry the loss)."""

from pathlib import Path

from ft import data
from ft.run import hardware
from ft.tasks import trainer_args


def sft_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import SFTConfig

    t = cfg.training
    return SFTConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=t.max_length,
        packing=t.packing,
        packing_strategy=t.packing_strategy,
        padding_free=t.padding_free,
        assistant_only_loss=t.assistant_only_loss and data.is_conversational(cfg.data.format),
        completion_only_loss=t.completion_only_loss,
    )
