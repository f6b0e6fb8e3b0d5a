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
    """The adapter. `method` is the PEFT type; DoRA, rsLoRA, PiSSA, LoRA+ and QLoRA are LoRA with the
    flags below (conf/peft/ has one option per named method)."""

    method: str = "lora"  # lora | ia3 | adalora | llama_adapter | none (full fine-tune)
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: Any = "all-linear"  # "all-linear", a list of module names, or null (PEFT's per-model default)
    bias: str = "none"
    modules_to_save: Optional[List[str]] = None
    # LoRA variants
    use_dora: bool = False  # DoRA: weight-decomposed LoRA (a trained magnitude vector per layer)
    use_rslora: bool = False  # rank-stabilized scaling lora_alpha / sqrt(r)
    init_lora_weights: Any = True  # true | gaussian | pissa | pissa_niter_N (PiSSA: saved converted to plain LoRA)
    loraplus_lr_ratio: Optional[float] = None  # set: LoRA+ optimizer, lora_B learns this many times faster
    # IA3
    feedforward_modules: Optional[List[str]] = None  # null: PEFT's per-model default
    # AdaLoRA: the rank budget shrinks from init_r to target_r per layer between tinit and total - tfinal
    init_r: int = 12
    target_r: int = 8
    tinit: float = 0.1  # steps of warmup before pruning; a float < 1 is a fraction of the run
    tfinal: float = 0.2  # steps at the final budget; a float < 1 is a fraction of the run
    deltaT: int = 1  # steps between two rank reallocations
    # Llama-Adapter (PEFT adaption prompt)
    adapter_len: int = 10  # learned prompt tokens per adapted layer
    adapter_layers: Optional[int] = None  # the top N decoder layers; null: all of them
    # Quantized base (QLoRA): bitsandbytes
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: str = "nf4"  # nf4 | fp4
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: str = "auto"  # auto (the run's precision) | float32 | bfloat16 | float16
    bnb_4bit_quant_storage: str = "auto"  # auto: uint8, or the compute dtype under distributed=fsdp_qlora


@dataclass
class GaloreConfig:
    rank: int = 128
    update_proj_gap: int = 200  # steps between recomputing the projection (an SVD per matrix)
    scale: float = 0.25


@dataclass
class OptimConfig:
    name: str = "adamw_torch"  # a transformers `optim` name
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    optim_args: Optional[str] = None  # extra "k=v,k=v" passed to the optimizer
    # GaLore (optim names galore_*): which Linear layers get low-rank gradient projection
    # (transformers' optim_target_modules: names or regexes), and the projection's settings.
    target_modules: Any = None
    galore: GaloreConfig = field(default_factory=GaloreConfig)


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
    packing_strategy: str = "bfd"  # bfd | bfd_split: best-fit decreasing, sequences isolated by position_ids
    padding_free: bool = False  # flatten each batch into one row; bfd packing always is
    neftune_noise_alpha: Optional[float] = None  # NEFTune embedding noise; None = off (e.g. 5)
    assistant_only_loss: bool = True  # conversational data: loss on assistant turns only
    completion_only_loss: Optional[bool] = None  # prompt-completion data: None = TRL's default (on)
    precision: str = "auto"  # auto (from the hardware) | fp32 | bf16 | fp16
    activation_checkpointing: Optional[bool] = None  # None: on with CUDA, off on CPU
    activation_checkpointing_use_reentrant: bool = False  # torch.utils.checkpoint's use_reentrant
    use_liger_kernel: bool = False  # Liger Triton kernels (GPU only, needs liger-kernel)
    torch_compile: bool = False  # torch.compile the model
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
class CallbacksConfig:
    """ft's trainer callbacks (src/ft/callbacks.py)."""

    sample_prompts: List[str] = field(default_factory=list)  # generated greedily at every eval
    sample_max_new_tokens: int = 48
    throughput: bool = True  # tokens/s and peak memory in every training log
    early_stopping_patience: Optional[int] = None  # evals without eval_loss improvement; None = off
    early_stopping_threshold: float = 0.0  # minimum eval_loss improvement that counts


@dataclass
class DistributedConfig:
    """How `python -m ft train` scales out. `single` runs in this process (or in each process an
    outside `accelerate launch` started); any other strategy relaunches under `accelerate launch`."""

    strategy: str = "single"  # single | ddp | fsdp | fsdp_qlora | zero2 | zero3 | zero3_offload
    num_processes: Optional[int] = None  # per machine; None: one per GPU
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = 29500
    timeout_s: int = 1800  # how long a rank waits for the others (process group, barriers)


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
