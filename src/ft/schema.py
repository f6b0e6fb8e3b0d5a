"""The typed config schema: the single source of every default.

YAML files under conf/ and recipes/ only override these values. Each dataclass is one config group;
`FtConfig` is the root. Registered in Hydra's ConfigStore by `ft.config`.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

TINY_MODEL = "tiny"  # model.name_or_path value that selects the offline tiny Llama


@dataclass
class TinyModelConfig:
    """Shape of the offline tiny Llama built from config (random weights, locally trained BPE)."""

    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 1024
    max_position_embeddings: int = 1024
    seed: int = 0


@dataclass
class ModelConfig:
    name_or_path: str = TINY_MODEL  # a hub id, a local directory, or "tiny"
    revision: Optional[str] = None
    dtype: str = "auto"  # auto (from the hardware) | float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    trust_remote_code: bool = False
    chat_template: Optional[str] = None  # a Jinja template replacing the tokenizer's
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class PeftConfig:
    method: str = "lora"  # lora | none (full fine-tune)
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: Any = "all-linear"  # "all-linear" or a list of module names
    bias: str = "none"
    modules_to_save: Optional[List[str]] = None


@dataclass
class OptimConfig:
    name: str = "adamw_torch"  # a transformers `optim` name
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    optim_args: Optional[str] = None  # extra "k=v,k=v" passed to the optimizer


@dataclass
class SyntheticDataConfig:
    tasks: List[str] = field(default_factory=lambda: ["add", "reverse", "upper", "sort"])
    num_examples: int = 2000
    seed: int = 0


@dataclass
class DataConfig:
    source: str = "synthetic"  # "synthetic", a hub dataset id, or a local file / directory
    format: str = "messages"  # messages | alpaca | sharegpt | prompt_completion | text
    columns: Dict[str, str] = field(default_factory=dict)  # ft field name -> column in the source
    subset: Optional[str] = None  # hub dataset config name
    train_split: str = "train"
    eval_split: Optional[str] = None  # a split of the source; None carves eval_size out of train
    eval_size: float = 0.05  # a fraction (< 1) or a number of examples (>= 1)
    max_examples: Optional[int] = None  # cap on training examples, after the eval split
    system_prompt: Optional[str] = None  # prepended as a system turn to conversational data
    seed: int = 0  # shuffling and the train/eval split
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)


@dataclass
class TrainingConfig:
    output_dir: str = "runs"  # run directories are created under it
    run_name: Optional[str] = None  # default: <recipe>-<timestamp>
    max_steps: int = -1  # > 0 overrides num_train_epochs
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03  # an int number of steps, or a float < 1 as a ratio of the run
    max_length: int = 1024
    packing: bool = False
    assistant_only_loss: bool = True  # conversational data: loss on assistant turns only
    completion_only_loss: Optional[bool] = None  # prompt-completion data: None = TRL's default (on)
    precision: str = "auto"  # auto (from the hardware) | fp32 | bf16 | fp16
    activation_checkpointing: Optional[bool] = None  # None: on with CUDA, off on CPU
    eval_strategy: str = "steps"  # no | steps | epoch
    eval_steps: float = 0.2  # an int number of steps, or a float < 1 as a ratio of the run
    save_strategy: str = "steps"  # no | steps | epoch
    save_steps: float = 500
    save_total_limit: Optional[int] = 2
    logging_steps: float = 10
    eval_before_training: bool = True  # report the untrained model's eval loss next to the final
    seed: int = 42
    dataloader_num_workers: int = 0
    resume: str = "auto"  # auto (continue the run dir's last complete checkpoint) | never | a checkpoint path
    overwrite: bool = False  # replace an existing run dir (made by a different config, or finished)


@dataclass
class LoggingConfig:
    report_to: List[str] = field(default_factory=lambda: ["tensorboard"])
    project: str = "ft"  # W&B / trackio project name


@dataclass
class DistributedConfig:
    """Seam for the distributed issue: `single` is one process, whatever launched it."""

    strategy: str = "single"


@dataclass
class FtConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    recipe: Optional[str] = None  # filled in with the chosen recipe's name
