"""`ft train` with task=kto: Kahneman-Tversky Optimization on single answers labelled good or bad, top to bottom.

checks -> run dir -> unpaired data (data.format=unpaired: prompt/completion/label) -> tokenizer ->
model (quantized for QLoRA; with model.adapter, a finished run's adapter to continue) -> PEFT config ->
KTOConfig (the shared TrainingArguments + the `kto` section) -> KTOTrainer + callbacks -> train
-> finish, the same session as SFT (ft.training.session).

As for DPO, the reference model is the base with the adapter switched off (or a frozen copy of the
model.adapter it started from); the KL term is estimated from mismatched prompt/completion pairs of
each batch, so batches are read in order and hold 2 examples or more.
"""

from dataclasses import dataclass
from pathlib import Path

from ft.config.registry import Task
from ft.errors import FtError
from ft.options import option


@dataclass
class KtoConfig:
    """TRL's KTOConfig settings (the sequence length is training.max_length)."""

    beta: float = option(0.1, gt=0, help="how far the policy may move from the reference (higher stays closer)")
    desirable_weight: float = option(1.0, gt=0, help="weight of the losses on good (label true) completions")
    undesirable_weight: float = option(1.0, gt=0, help="weight of the losses on bad (label false) completions")
    precompute_ref_log_probs: bool = option(
        False, help="compute the reference log-probs once before training (faster steps, a pass over the data)"
    )


def check_config(cfg) -> None:
    if cfg.training.per_device_train_batch_size < 2:
        raise FtError(
            "task=kto estimates its KL term from the other completions of a batch: set "
            "training.per_device_train_batch_size to 2 or more"
        )


def kto_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import KTOConfig

    from ft.training import trainer_args

    k = cfg.kto
    return KTOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        beta=k.beta,
        desirable_weight=k.desirable_weight,
        undesirable_weight=k.undesirable_weight,
        precompute_ref_log_probs=k.precompute_ref_log_probs,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready KTOTrainer (completions tokenized, model wrapped); nothing trained yet."""
    from trl import KTOTrainer

    from ft.training import build

    return build.trainer(KTOTrainer, kto_config, cfg, run_dir, resuming)


TASK = Task(
    name="kto",
    summary="Kahneman-Tversky Optimization on single answers labelled good or bad (TRL's KTOTrainer)",
    formats=("unpaired",),
    build_trainer=build_trainer,
    section=KtoConfig,
    check_config=check_config,
    no_evaluation="a KTO run's eval data is single answers labelled good or bad, which ft eval does not score: its "
    "eval metrics (rewards, KL) are in the run's eval_results.json and model card",
)
