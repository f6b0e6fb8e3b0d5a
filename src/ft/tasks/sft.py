"""`ft train` with task=sft: supervised fine-tuning, top to bottom.

checks (engine, hardware, model reachable) -> run dir (new, resumed or replaced; rank 0 decides) ->
data -> tokenizer -> model (quantized for QLoRA) -> PEFT config -> SFTConfig (the shared
TrainingArguments + sequence length, packing and which tokens carry the loss) -> SFTTrainer + callbacks
-> train (untrained eval at step 0, preemption-safe) -> evaluate -> save adapter + tokenizer -> metrics,
loss plot, exact match on synthetic data, model card, optional push (rank 0). The session
(ft.training.session) runs the steps every task shares; SFT's settings are in `training` (no section).
"""

from pathlib import Path

from ft.config.data_schema import SFT_FORMATS
from ft.config.registry import Task


def sft_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import SFTConfig

    from ft import data
    from ft.training import trainer_args

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


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready SFTTrainer (data prepared, model wrapped); nothing trained yet."""
    from trl import SFTTrainer

    from ft.data import templates
    from ft.training import build

    return build.trainer(SFTTrainer, sft_config, cfg, run_dir, resuming, prepare=templates.prepare, trained_share=True)


TASK = Task(
    name="sft",
    summary="supervised fine-tuning on conversations, prompt/completion pairs or text (TRL's SFTTrainer)",
    formats=tuple(SFT_FORMATS),
    build_trainer=build_trainer,
    evaluation="answers",
    packing=True,
    cache=True,
)
