"""`ft train` with task=dpo: Direct Preference Optimization on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model (quantized for
QLoRA; with model.adapter, a finished run's adapter to continue) -> PEFT config -> DPOConfig
(the shared TrainingArguments + the `preference` section) -> DPOTrainer + callbacks -> train -> finish,
the same session as SFT (ft.run.session).

The reference model is never a second copy of the weights: TRL computes its log-probs with the
adapter switched off (the base), or, when model.adapter brought an adapter, with a frozen copy of
that adapter (TRL's "ref" adapter), so DPO pulls away from the SFT model it started from.
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, trainer_args


def dpo_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import DPOConfig

    p = cfg.preference
    return DPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        beta=p.beta,
        loss_type=[p.loss_type],
        label_smoothing=p.label_smoothing,
        use_weighting=p.use_weighting,
        precompute_ref_log_probs=p.precompute_ref_log_probs,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready DPOTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl import DPOTrainer

    return build.trainer(DPOTrainer, dpo_config, cfg, run_dir, resuming)


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
