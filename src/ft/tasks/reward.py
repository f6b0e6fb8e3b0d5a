"""`ft train` with task=reward: a reward model trained on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model under a
sequence-classification head with one output, the reward (AutoModelForSequenceClassification,
num_labels=1; the head is new and random) -> PEFT config (task type SEQ_CLS: the adapter, plus the
head trained in full) -> RewardConfig (the shared TrainingArguments) -> RewardTrainer + callbacks ->
train -> finish, the same session as SFT (ft.run.session).

The loss is Bradley-Terry: -log sigmoid(reward(prompt + chosen) - reward(prompt + rejected)); the eval
reports `eval_accuracy`, the share of held-out pairs whose chosen answer gets the higher reward.
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, trainer_args


def reward_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import RewardConfig

    return RewardConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        center_rewards_coefficient=cfg.preference.center_rewards_coefficient,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready RewardTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl import RewardTrainer

    return build.trainer(RewardTrainer, reward_config, cfg, run_dir, resuming, num_labels=1)


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
