"""`ft train` with task=rloo: REINFORCE Leave-One-Out on prompts, top to bottom.

checks (the reward functions resolved) -> run dir -> prompts (data.format=prompts) -> tokenizer -> model
(with model.adapter, a finished run's adapter to continue) -> PEFT config -> RLOOConfig (the shared
TrainingArguments + the `rloo` section) -> RLOOTrainer + the reward functions + callbacks -> train ->
finish, the same session as SFT (ft.training.session).

Like GRPO, the model answers each prompt rloo.num_generations times and the reward functions
(ft.training.rewards) score the answers; a completion's baseline is the mean reward of the *other*
completions of its prompt (leave one out), so its advantage needs no value model and no std scaling.
With rloo.beta > 0 a KL penalty to the reference (the adapter switched off) is added.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ft.config.registry import Task
from ft.options import option


@dataclass
class RlooConfig:
    """TRL's RLOOConfig settings (docs: Reinforcement learning)."""

    rewards: List[str] = option(
        ["exact_match"], help="reward functions: exact_match, bare_answer, last_number, or module:function"
    )
    reward_weights: Optional[List[float]] = option(None, help="one weight per reward function; null: all 1.0")
    num_generations: int = option(4, ge=2, help="completions per prompt; each one's baseline is the others' mean")
    max_completion_length: int = option(16, ge=1, help="tokens generated per completion at most")
    temperature: float = option(1.0, gt=0, help="sampling temperature of the generations")
    top_p: float = option(1.0, gt=0, le=1, help="nucleus sampling: the smallest token set with this probability")
    beta: float = option(0.05, ge=0, help="KL penalty to the reference (adapter off); 0: no reference pass")
    normalize_advantages: bool = option(False, help="scale each generation batch's advantages to mean 0, std 1")
    use_vllm: bool = option(False, help="generate with vLLM (CUDA GPU and the vllm package); false: transformers")


def check_config(cfg) -> None:
    """The reward functions resolve, and each prompt's completions fit in one batch."""
    from ft.training import rewards

    rewards.check(cfg.rloo.rewards, cfg.rloo.reward_weights, "rloo")
    rewards.check_groups(cfg.training, cfg.rloo.num_generations, "rloo")


def check_machine(cfg, hw) -> None:
    from ft.rules import machine

    if cfg.rloo.use_vllm:
        machine.check_vllm(hw, "rloo.use_vllm")


def rloo_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import RLOOConfig

    from ft.training import trainer_args

    r = cfg.rloo
    return RLOOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        num_generations=r.num_generations,
        max_completion_length=r.max_completion_length,
        temperature=r.temperature,
        top_p=r.top_p,
        beta=r.beta,
        normalize_advantages=r.normalize_advantages,
        reward_weights=list(r.reward_weights) if r.reward_weights else None,
        use_vllm=r.use_vllm,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready RLOOTrainer (reward functions loaded, model wrapped); nothing trained yet."""
    from trl import RLOOTrainer

    from ft.training import build, rewards

    reward_functions = rewards.load(list(cfg.rloo.rewards))
    trainer = build.trainer(RLOOTrainer, rloo_config, cfg, run_dir, resuming, reward_funcs=reward_functions)
    rewards.try_on(reward_functions, trainer.train_dataset[0])
    return trainer


TASK = Task(
    name="rloo",
    summary="REINFORCE Leave-One-Out: like GRPO, each answer's baseline is the mean reward of the others",
    formats=("prompts",),
    build_trainer=build_trainer,
    section=RlooConfig,
    evaluation="prompts",
    check_config=check_config,
    check_machine=check_machine,
)
