"""`ft train` with task=reward: a reward model trained on prompt/chosen/rejected pairs, top to bottom.

checks -> run dir -> preference data (data.format=preference) -> tokenizer -> model under a
sequence-classification head with one output, the reward (AutoModelForSequenceClassification,
num_labels=1; the head is new and random) -> PEFT config (task type SEQ_CLS: the adapter, plus the
head trained in full) -> RewardConfig (the shared TrainingArguments + the `reward` section) ->
RewardTrainer + callbacks -> train -> finish, the same session as SFT (ft.training.session).

The loss is Bradley-Terry: -log sigmoid(reward(prompt + chosen) - reward(prompt + rejected)); the eval
reports `eval_accuracy`, the share of held-out pairs whose chosen answer gets the higher reward.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ft.config.registry import Task
from ft.errors import FtError
from ft.options import option


@dataclass
class RewardConfig:
    """TRL's RewardConfig settings (the sequence length is training.max_length)."""

    center_rewards_coefficient: Optional[float] = option(
        None, ge=0, help="weight of a penalty on the mean reward squared (keeps rewards centred); null: off"
    )


def check_config(cfg) -> None:
    if cfg.peft.method == "llama_adapter":
        raise FtError("peft.method=llama_adapter adapts a causal LM, not a reward model: use peft=lora for task=reward")


def reward_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import RewardConfig as TrlRewardConfig

    from ft.training import trainer_args

    return TrlRewardConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        center_rewards_coefficient=cfg.reward.center_rewards_coefficient,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready RewardTrainer (pairs tokenized, model wrapped); nothing trained yet."""
    from trl import RewardTrainer

    from ft.training import build

    return build.trainer(RewardTrainer, reward_config, cfg, run_dir, resuming, num_labels=1)


TASK = Task(
    name="reward",
    summary="a reward model (one score per answer) trained on chosen/rejected pairs (TRL's RewardTrainer)",
    formats=("preference",),
    build_trainer=build_trainer,
    section=RewardConfig,
    head="sequence_classification",
    check_config=check_config,
    no_evaluation="a reward model scores answers and has no language-model head: its held-out pairwise accuracy "
    "is in the run's eval_results.json and model card",
)
