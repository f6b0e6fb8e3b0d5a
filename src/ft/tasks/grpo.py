"""`ft train` with task=grpo: Group Relative Policy Optimization on prompts, top to bottom.

checks (the reward functions resolved) -> run dir -> prompts (data.format=prompts) -> tokenizer -> model
(with model.adapter, a finished run's adapter to continue) -> PEFT config -> GRPOConfig (the shared
TrainingArguments + the `grpo` section) -> GRPOTrainer + the reward functions + callbacks -> train ->
finish, the same session as SFT (ft.run.session).

Each step, the model generates grpo.num_generations completions per prompt (transformers' generate, or
vLLM with grpo.use_vllm on a GPU machine),
the reward functions (ft.tasks.rewards) score them, and each completion's log-probs are pushed up or
down by its advantage: its reward minus its group's mean (divided by the std, grpo.scale_rewards).
With grpo.beta > 0 a KL penalty to the reference (the adapter switched off) is added.
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, rewards, trainer_args


def grpo_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import GRPOConfig

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

    reward_functions = rewards.load(list(cfg.grpo.rewards))
    trainer = build.trainer(GRPOTrainer, grpo_config, cfg, run_dir, resuming, reward_funcs=reward_functions)
    rewards.try_on(reward_functions, trainer.train_dataset[0])
    return trainer


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
