"""`ft train` with task=orpo: Odds Ratio Preference Optimization on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model (quantized for
QLoRA) -> PEFT config -> ORPOConfig (the shared TrainingArguments + preference.beta, ORPO's lambda)
-> ORPOTrainer (trl.experimental) + callbacks -> train -> finish, the same session as SFT (ft.run.session).

ORPO needs no reference model and no SFT run before it: its loss is the SFT loss on chosen plus
beta times -log sigmoid(log odds(chosen) - log odds(rejected)).
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, trainer_args


def orpo_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        beta=cfg.preference.beta,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready ORPOTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl.experimental.orpo import ORPOTrainer

    return build.trainer(ORPOTrainer, orpo_config, cfg, run_dir, resuming)


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
