"""`ft train` with task=kto: Kahneman-Tversky Optimization on single answers labelled good or bad, top to bottom.

checks -> run dir -> unpaired data (data.format=unpaired: prompt/completion/label) -> tokenizer ->
model (quantized for QLoRA; with model.adapter, a finished run's adapter to continue) -> PEFT config ->
KTOConfig (the shared TrainingArguments + the `preference` section) -> KTOTrainer + callbacks -> train
-> finish, the same session as SFT (ft.run.session).

As for DPO, the reference model is the base with the adapter switched off (or a frozen copy of the
model.adapter it started from); the KL term is estimated from mismatched prompt/completion pairs of
each batch, so batches are read in order and hold 2 examples or more.
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, trainer_args


def kto_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import KTOConfig

    p = cfg.preference
    return KTOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        beta=p.beta,
        desirable_weight=p.desirable_weight,
        undesirable_weight=p.undesirable_weight,
        precompute_ref_log_probs=p.precompute_ref_log_probs,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready KTOTrainer (completions tokenized, model wrapped); nothing trained yet."""
    from trl import KTOTrainer

    return build.trainer(KTOTrainer, kto_config, cfg, run_dir, resuming)


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
