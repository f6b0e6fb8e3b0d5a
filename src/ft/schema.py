"""The typed config schema: the single source of every default, allowed value and numeric range.

YAML files under conf/ and recipes/ only override these values. Each dataclass is one config group;
`FtConfig` is the root. Registered in Hydra's ConfigStore by `ft.config`, which checks every value
against the `choices` and bounds declared here before anything heavy is imported.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ft.synthetic import TASKS

TINY_MODEL = "tiny"  # model.name_or_path value that selects the offline tiny Llama

# Names the libraries accept, copied so that a typo fails before they are imported;
# tests/test_config.py checks each list against the installed library.
TORCH_DTYPES = ["float32", "bfloat16", "float16"]
BNB_STORAGE_DTYPES = ["uint8", "int8", "float32", "bfloat16", "float16"]
OPTIMIZERS = [  # transformers.training_args.OptimizerNames
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit",
    "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit",
    "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb",
    "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor",
    "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo",
    "grokadamw", "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw",
    "apollo_adamw_layerwise", "stable_adamw",
]
SCHEDULERS = [  # transformers.trainer_utils.SchedulerType
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
]
REPORT_TO = [  # transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK, plus "none"
    "azure_ml", "comet_ml", "mlflow", "neptune", "tensorboard", "trackio", "wandb", "codecarbon", "clearml",
    "dagshub", "flyte", "dvclive", "swanlab", "kubeflow", "none",
]
SYNTHETIC_TASKS = list(TASKS)
STRATEGIES = ["single", "ddp", "fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_offload"]


def option(default: Any = None, *, choices: list | None = None, ge=None, gt=None, le=None, lt=None) -> Any:
    """A schema field with its allowed values (`choices`, also for each item of a list) or its numeric
    bounds (ge/gt/le/lt: >=, >, <=, <). None is always allowed for an Optional field."""
    metadata = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    metadata = {key: value for key, value in metadata.items() if value is not None}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TinyModelConfig:
    """Shape of the offline tiny Llama built from config (random weights, locally trained BPE)."""

    hidden_size: int = option(256, ge=1)
    intermediate_size: int = option(688, ge=1)
    num_hidden_layers: int = option(4, ge=1)
    num_attention_heads: int = option(4, ge=1)
    num_key_value_heads: int = option(2, ge=1)
    vocab_size: int = option(1024, ge=1)
    max_position_embeddings: int = option(1024, ge=1)
    seed: int = option(0, ge=0)


@dataclass
class ModelConfig:
    name_or_path: str = TINY_MODEL  # a hub id, a local directory, or "tiny"
    revision: Optional[str] = None
    dtype: str = option("auto", choices=["auto", *TORCH_DTYPES])  # auto: from the hardware
    attn_implementation: str = option("sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    trust_remote_code: bool = False
    chat_template: Optional[str] = None  # a Jinja template replacing the tokenizer's
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class PeftConfig:
    """The adapter. `method` is the PEFT type; DoRA, rsLoRA, PiSSA, LoRA+ and QLoRA are LoRA with the
    flags below (conf/peft/ has one option per named method)."""

    method: str = option("lora", choices=["lora", "ia3", "adalora", "llama_adapter", "none"])  # none: full fine-tune
    r: int = option(16, ge=1)
    lora_alpha: int = option(32, gt=0)
    lora_dropout: float = option(0.05, ge=0, lt=1)
    target_modules: Any = "all-linear"  # "all-linear", a list of module names, or null (PEFT's per-model default)
    bias: str = option("none", choices=["none", "all", "lora_only"])
    modules_to_save: Optional[List[str]] = None
    # LoRA variants
    use_dora: bool = False  # DoRA: weight-decomposed LoRA (a trained magnitude vector per layer)
    use_rslora: bool = False  # rank-stabilized scaling lora_alpha / sqrt(r)
    init_lora_weights: Any = True  # true | gaussian | pissa | pissa_niter_N (PiSSA: saved converted to plain LoRA)
    loraplus_lr_ratio: Optional[float] = option(None, ge=1)  # set: LoRA+ optimizer, lora_B learns this many times faster
    # IA3
    feedforward_modules: Optional[List[str]] = None  # null: PEFT's per-model default
    # AdaLoRA: the rank budget shrinks from init_r to target_r per layer between tinit and total - tfinal
    init_r: int = option(12, ge=1)
    target_r: int = option(8, ge=1)
    tinit: float = option(0.1, ge=0)  # steps of warmup before pruning; a float < 1 is a fraction of the run
    tfinal: float = option(0.2, ge=0)  # steps at the final budget; a float < 1 is a fraction of the run
    deltaT: int = option(1, ge=1)  # steps between two rank reallocations
    # Llama-Adapter (PEFT adaption prompt)
    adapter_len: int = option(10, ge=1)  # learned prompt tokens per adapted layer
    adapter_layers: Optional[int] = option(None, ge=1)  # the top N decoder layers; null: all of them
    # Quantized base (QLoRA): bitsandbytes
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: str = option("nf4", choices=["nf4", "fp4"])
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: str = option("auto", choices=["auto", *TORCH_DTYPES])  # auto: the run's precision
    bnb_4bit_quant_storage: str = option("auto", choices=["auto", *BNB_STORAGE_DTYPES])  # auto: uint8, or the compute dtype under distributed=fsdp_qlora


@dataclass
class GaloreConfig:
    rank: int = option(128, ge=1)
    update_proj_gap: int = option(200, ge=1)  # steps between recomputing the projection (an SVD per matrix)
    scale: float = option(0.25, gt=0)


@dataclass
class OptimConfig:
    name: str = option("adamw_torch", choices=OPTIMIZERS)  # a transformers `optim` name
    weight_decay: float = option(0.0, ge=0)
    adam_beta1: float = option(0.9, ge=0, lt=1)
    adam_beta2: float = option(0.999, ge=0, lt=1)
    adam_epsilon: float = option(1e-8, gt=0)
    max_grad_norm: float = option(1.0, ge=0)
    optim_args: Optional[str] = None  # extra "k=v,k=v" passed to the optimizer
    # GaLore (optim names galore_*): which Linear layers get low-rank gradient projection
    # (transformers' optim_target_modules: names or regexes), and the projection's settings.
    target_modules: Any = None
    galore: GaloreConfig = field(default_factory=GaloreConfig)


@dataclass
class SyntheticDataConfig:
    tasks: List[str] = option(["add", "reverse", "upper", "sort"], choices=SYNTHETIC_TASKS)
    num_examples: int = option(2000, ge=1)
    seed: int = option(0, ge=0)


@dataclass
class DataConfig:
    source: str = "synthetic"  # "synthetic", a hub dataset id, or a local file / directory
    format: str = option("messages", choices=["messages", "alpaca", "sharegpt", "prompt_completion", "text"])
    columns: Dict[str, str] = field(default_factory=dict)  # ft field name -> column in the source
    subset: Optional[str] = None  # hub dataset config name
    train_split: str = "train"
    eval_split: Optional[str] = None  # a split of the source; None carves eval_size out of train
    eval_size: float = option(0.05, ge=0)  # a fraction (< 1) or a number of examples (>= 1)
    max_examples: Optional[int] = option(None, ge=0)  # cap on training examples, after the eval split
    system_prompt: Optional[str] = None  # prepended as a system turn to conversational data
    seed: int = option(0, ge=0)  # shuffling and the train/eval split
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)


@dataclass
class TrainingConfig:
    output_dir: str = "runs"  # run directories are created under it
    run_name: Optional[str] = None  # default: <recipe>-<timestamp>
    max_steps: int = option(-1, ge=-1)  # > 0 overrides num_train_epochs
    num_train_epochs: float = option(1.0, ge=0)
    per_device_train_batch_size: int = option(8, ge=1)
    per_device_eval_batch_size: int = option(16, ge=1)
    gradient_accumulation_steps: int = option(1, ge=1)
    learning_rate: float = option(2e-4, gt=0)
    lr_scheduler_type: str = option("cosine", choices=SCHEDULERS)
    warmup_steps: float = option(0.03, ge=0)  # an int number of steps, or a float < 1 as a ratio of the run
    max_length: int = option(1024, ge=1)
    packing: bool = False
    packing_strategy: str = option("bfd", choices=["bfd", "bfd_split"])  # best-fit decreasing; sequences isolated by position_ids
    padding_free: bool = False  # flatten each batch into one row; bfd packing always is
    neftune_noise_alpha: Optional[float] = option(None, gt=0)  # NEFTune embedding noise; None = off (e.g. 5)
    assistant_only_loss: bool = True  # conversational data: loss on assistant turns only
    completion_only_loss: Optional[bool] = None  # prompt-completion data: None = TRL's default (on)
    precision: str = option("auto", choices=["auto", "fp32", "bf16", "fp16"])  # auto: from the hardware
    activation_checkpointing: Optional[bool] = None  # None: on with CUDA, off on CPU
    activation_checkpointing_use_reentrant: bool = False  # torch.utils.checkpoint's use_reentrant
    use_liger_kernel: bool = False  # Liger Triton kernels (GPU only, needs liger-kernel)
    torch_compile: bool = False  # torch.compile the model
    eval_strategy: str = option("steps", choices=["no", "steps", "epoch"])
    eval_steps: float = option(0.2, gt=0)  # an int number of steps, or a float < 1 as a ratio of the run
    save_strategy: str = option("steps", choices=["no", "steps", "epoch"])
    save_steps: float = option(500, gt=0)
    save_total_limit: Optional[int] = option(2, ge=1)
    logging_steps: float = option(10, gt=0)
    eval_before_training: bool = True  # report the untrained model's eval loss next to the final
    seed: int = option(42, ge=0)
    dataloader_num_workers: int = option(0, ge=0)
    resume: str = "auto"  # auto (continue the run dir's last complete checkpoint) | never | a checkpoint path
    overwrite: bool = False  # replace an existing run dir (made by a different config, or finished)


@dataclass
class LoggingConfig:
    report_to: List[str] = option(["tensorboard"], choices=REPORT_TO)
    project: str = "ft"  # W&B / trackio project name


@dataclass
class CallbacksConfig:
    """ft's trainer callbacks (src/ft/callbacks.py)."""

    sample_prompts: List[str] = field(default_factory=list)  # generated greedily at every eval
    sample_max_new_tokens: int = option(48, ge=1)
    throughput: bool = True  # tokens/s and peak memory in every training log
    early_stopping_patience: Optional[int] = option(None, ge=1)  # evals without eval_loss improvement; None = off
    early_stopping_threshold: float = option(0.0, ge=0)  # minimum eval_loss improvement that counts


@dataclass
class DistributedConfig:
    """How `python -m ft train` scales out. `single` runs in this process (or in each process an
    outside `accelerate launch` started); any other strategy relaunches under `accelerate launch`."""

    strategy: str = option("single", choices=STRATEGIES)
    num_processes: Optional[int] = option(None, ge=1)  # per machine; None: one per GPU
    num_machines: int = option(1, ge=1)
    machine_rank: int = option(0, ge=0)
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = option(29500, ge=1, le=65535)
    timeout_s: int = option(1800, ge=1)  # how long a rank waits for the others (process group, barriers)


@dataclass
class HubConfig:
    """Pushing the finished run to the Hugging Face Hub (`ft push` takes the same settings)."""

    push: bool = False  # push at the end of training (main process only)
    repo_id: Optional[str] = None  # owner/name
    private: bool = False
    revision: Optional[str] = None  # a branch; created if missing. None: main
    license: Optional[str] = None  # written into the model card's metadata, e.g. apache-2.0


@dataclass
class FtConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    recipe: Optional[str] = None  # filled in with the chosen recipe's name
