"""`ft train` with task=dpo: Direct Preference Optimization on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model (quantized for
QLoRA; with model.adapter, a finished run's adapter to continue) -> PEFT config -> DPOConfig
(the shared TrainingArguments + the `dpo` section) -> DPOTrainer + callbacks -> train -> finish,
the same session as SFT (ft.training.session).

The reference model is never a second copy of the weights: TRL computes its log-probs with the
adapter switched off (the base), or, when model.adapter brought an adapter, with a frozen copy of
that adapter (TRL's "ref" adapter), so DPO pulls away from the SFT model it started from.
"""

from dataclasses import dataclass
from pathlib import Path

from ft.config.names import DPO_LOSSES
from ft.config.registry import Task
from ft.options import option


@dataclass
class DpoConfig:
    """TRL's DPOConfig settings (the sequence length is training.max_length)."""

    beta: float = option(0.1, gt=0, help="how far the policy may move from the reference (higher stays closer)")
    loss_type: str = option("sigmoid", choices=DPO_LOSSES, help="the DPO loss (TRL's loss_type): sigmoid is DPO")
    label_smoothing: float = option(
        0.0, ge=0, lt=0.5, help="robust / exo_pair: the assumed probability that a preference label is flipped"
    )
    use_weighting: bool = option(False, help="WPO: weight each pair by the policy's length-normalized probability")
    precompute_ref_log_probs: bool = option(
        False, help="compute the reference log-probs once before training (faster steps, a pass over the data)"
    )


def trl_settings(d: DpoConfig) -> dict:
    """DPOConfig's keywords from a DpoConfig section (task=vlm_dpo's section is one too)."""
    return dict(
        beta=d.beta,
        loss_type=[d.loss_type],
        label_smoothing=d.label_smoothing,
        use_weighting=d.use_weighting,
        precompute_ref_log_probs=d.precompute_ref_log_probs,
    )


def dpo_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import DPOConfig

    from ft.training import trainer_args

    return DPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        **trl_settings(cfg.dpo),
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready DPOTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl import DPOTrainer

    from ft.training import build

    return build.trainer(DPOTrainer, dpo_config, cfg, run_dir, resuming)


TASK = Task(
    name="dpo",
    summary="Direct Preference Optimization on chosen/rejected pairs (TRL's DPOTrainer)",
    formats=("preference",),
    build_trainer=build_trainer,
    section=DpoConfig,
    evaluation="pairs",
)
