"""`ft train` with task=simpo: Simple Preference Optimization on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model (quantized for
QLoRA) -> PEFT config -> CPOConfig with loss_type="simpo" (the shared TrainingArguments +
preference.beta and preference.simpo_gamma) -> CPOTrainer (trl.experimental) + callbacks -> train ->
finish, the same session as SFT (ft.run.session).

SimPO needs no reference model: its loss is -log sigmoid(beta * (mean log p(chosen) - mean log
p(rejected)) - gamma), the log-probs averaged over each answer's tokens. cpo_alpha=0: no SFT term
(with one, it is CPO-SimPO).
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, trainer_args


def simpo_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl.experimental.cpo import CPOConfig

    p = cfg.preference
    return CPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        loss_type="simpo",
        beta=p.beta,
        simpo_gamma=p.simpo_gamma,
        cpo_alpha=0.0,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready CPOTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl.experimental.cpo import CPOTrainer

    return build.trainer(CPOTrainer, simpo_config, cfg, run_dir, resuming)


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
