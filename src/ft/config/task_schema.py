"""The schema sections of the tasks beyond SFT (part of the schema in ft.config.schema, which holds
the task lists; split off to keep each module small)."""

from dataclasses import dataclass
from typing import List, Optional

from ft.config.names import DPO_LOSSES, GRPO_LOSSES
from ft.options import option


@dataclass
class PreferenceConfig:
    """Preference training (task=dpo, reward, orpo, simpo, kto): TRL's settings. The sequence length is
    training.max_length; the reference model (dpo, kto) is the base with the adapter switched off, or, with
    model.adapter, a frozen copy of the starting adapter."""

    beta: float = option(
        0.1, gt=0, help="dpo/kto: how far from the reference (higher stays closer); orpo: lambda; simpo: reward scale"
    )
    loss_type: str = option("sigmoid", choices=DPO_LOSSES, help="the DPO loss (TRL's loss_type): sigmoid is DPO")
    label_smoothing: float = option(
        0.0, ge=0, lt=0.5, help="robust / exo_pair: the assumed probability that a preference label is flipped"
    )
    use_weighting: bool = option(False, help="WPO: weight each pair by the policy's length-normalized probability")
    precompute_ref_log_probs: bool = option(
        False, help="compute the reference log-probs once before training (faster steps, a pass over the data)"
    )
    desirable_weight: float = option(1.0, gt=0, help="kto: weight of the losses on good (label true) completions")
    undesirable_weight: float = option(1.0, gt=0, help="kto: weight of the losses on bad (label false) completions")
    simpo_gamma: float = option(0.5, ge=0, help="simpo: the target margin between the chosen and rejected rewards")
    center_rewards_coefficient: Optional[float] = option(
        None, ge=0, help="reward: weight of a penalty on the mean reward squared (keeps rewards centred); null: off"
    )


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
