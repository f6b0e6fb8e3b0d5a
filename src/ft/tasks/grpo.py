"""`ft train` with task=grpo: Group Relative Policy Optimization on prompts, top to bottom.

checks (the reward functions resolved) -> run dir -> prompts (data.format=prompts) -> tokenizer -> model
(with model.adapter, a finished run's adapter to continue) -> PEFT config -> GRPOConfig (the shared
TrainingArguments + the `grpo` section) -> GRPOTrainer + the reward functions + callbacks -> train ->
finish, the same session as SFT (ft.training.session).

Each step, the model generates grpo.num_generations completions per prompt (transformers' generate, or
vLLM with grpo.use_vllm on a GPU machine), the reward functions (ft.training.rewards) score them, and
each completion's log-probs are pushed up or down by its advantage: its reward minus its group's mean
(divided by the std, grpo.scale_rewards). With grpo.beta > 0 a KL penalty to the reference (the adapter
switched off) is added.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ft.config.names import GRPO_LOSSES
from ft.config.registry import Task
from ft.options import option


@dataclass
class GrpoConfig:
    """GRPO (task=grpo): TRL's GRPOConfig settings (README: Reinforcement learning (GRPO))."""

    rewards: List[str] = option(
        ["exact_match"], help="reward functions: exact_match, bare_answer, last_number, or module:function"
    )
    reward_weights: Optional[List[float]] = option(None, help="one weight per reward function; null: all 1.0")
    num_generations: int = option(4, ge=2, help="completions per prompt (a group); the batch must divide by it")
    max_completion_length: int = option(16, ge=1, help="tokens generated per completion at most")
    temperature: float = option(1.0, gt=0, help="sampling temperature of the generations")
    top_p: float = option(1.0, gt=0, le=1, help="nucleus sampling: the smallest token set with this probability")
    beta: float = option(0.0, ge=0, help="KL penalty to the reference (adapter off); 0: no reference pass")
    loss_type: str = option("dapo", choices=GRPO_LOSSES, help="how token losses are aggregated (TRL's loss_type)")
    scale_rewards: str = option("group", choices=["group", "batch", "none"], help="divide advantages by the std of")
    use_vllm: bool = option(False, help="generate with vLLM (CUDA GPU and the vllm package); false: transformers")
    vllm_mode: str = option(
        "colocate",
        choices=["colocate", "server"],
        help="colocate: in the training processes; server: trl vllm-serve",
    )
    vllm_gpu_memory_utilization: float = option(
        0.3, gt=0, le=1, help="colocate: share of each GPU's memory vLLM may take for weights and KV cache"
    )


def check_config(cfg) -> None:
    """The reward functions resolve, and each prompt's group of completions fits in one batch."""
    from ft.training import rewards

    rewards.check(cfg.grpo.rewards, cfg.grpo.reward_weights, "grpo")
    rewards.check_groups(cfg.training, cfg.grpo.num_generations, "grpo")


def check_machine(cfg, hw) -> None:
    from ft.rules import machine

    if cfg.grpo.use_vllm:
        machine.check_vllm(hw, "grpo.use_vllm")


def grpo_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import GRPOConfig

    from ft.training import trainer_args

    g = cfg.grpo
    return GRPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        beta=g.beta,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        reward_weights=list(g.reward_weights) if g.reward_weights else None,
        use_vllm=g.use_vllm,
        vllm_mode=g.vllm_mode,
        vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready GRPOTrainer (reward functions loaded, model wrapped); nothing trained yet."""
    from trl import GRPOTrainer

    from ft.training import build, rewards

    reward_functions = rewards.load(list(cfg.grpo.rewards))
    trainer = build.trainer(GRPOTrainer, grpo_config, cfg, run_dir, resuming, reward_funcs=reward_functions)
    rewards.try_on(reward_functions, trainer.train_dataset[0])
    return trainer


TASK = Task(
    name="grpo",
    summary="Group Relative Policy Optimization: the model answers prompts, reward functions score the answers",
    formats=("prompts",),
    build_trainer=build_trainer,
    section=GrpoConfig,
    evaluation="prompts",
    check_config=check_config,
    check_machine=check_machine,
)
