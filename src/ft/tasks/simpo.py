"""`ft train` with task=simpo: Simple Preference Optimization on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model (quantized for
QLoRA) -> PEFT config -> CPOConfig with loss_type="simpo" (the shared TrainingArguments + the `simpo`
section) -> CPOTrainer (trl.experimental) + callbacks -> train -> finish, the same session as SFT
(ft.training.session).

SimPO needs no reference model: its loss is -log sigmoid(beta * (mean log p(chosen) - mean log
p(rejected)) - gamma), the log-probs averaged over each answer's tokens. cpo_alpha=0: no SFT term
(with one, it is CPO-SimPO).
"""

from dataclasses import dataclass
from pathlib import Path

from ft.config.registry import Task
from ft.options import option


@dataclass
class SimpoConfig:
    """TRL's CPOConfig settings for loss_type=simpo (the sequence length is training.max_length)."""

    beta: float = option(0.1, gt=0, help="the reward scale: rewards are beta times the mean log-probability")
    simpo_gamma: float = option(0.5, ge=0, help="the target margin between the chosen and rejected rewards")


def simpo_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl.experimental.cpo import CPOConfig

    from ft.training import trainer_args

    s = cfg.simpo
    return CPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        loss_type="simpo",
        beta=s.beta,
        simpo_gamma=s.simpo_gamma,
        cpo_alpha=0.0,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready CPOTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl.experimental.cpo import CPOTrainer

    from ft.training import build

    return build.trainer(CPOTrainer, simpo_config, cfg, run_dir, resuming)


TASK = Task(
    name="simpo",
    summary="Simple Preference Optimization: length-normalized rewards with a margin, no reference model",
    formats=("preference",),
    build_trainer=build_trainer,
    section=SimpoConfig,
    evaluation="pairs",
)
