"""`ft train` with task=orpo: Odds Ratio Preference Optimization on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model (quantized for
QLoRA) -> PEFT config -> ORPOConfig (the shared TrainingArguments + the `orpo` section) -> ORPOTrainer
(trl.experimental) + callbacks -> train -> finish, the same session as SFT (ft.training.session).

ORPO needs no reference model and no SFT run before it: its loss is the SFT loss on chosen plus
beta (the paper's lambda) times -log sigmoid(log odds(chosen) - log odds(rejected)).
"""

from dataclasses import dataclass
from pathlib import Path

from ft.config.registry import Task
from ft.options import option


@dataclass
class OrpoConfig:
    """TRL's ORPOConfig settings (the sequence length is training.max_length)."""

    beta: float = option(0.1, gt=0, help="the weight of the odds-ratio term next to the SFT loss (the paper's lambda)")


def orpo_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl.experimental.orpo import ORPOConfig

    from ft.training import trainer_args

    return ORPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        beta=cfg.orpo.beta,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready ORPOTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl.experimental.orpo import ORPOTrainer

    from ft.training import build

    return build.trainer(ORPOTrainer, orpo_config, cfg, run_dir, resuming)


TASK = Task(
    name="orpo",
    summary="Odds Ratio Preference Optimization: SFT and preference in one loss, no reference model",
    formats=("preference",),
    build_trainer=build_trainer,
    section=OrpoConfig,
    evaluation="pairs",
)
