"""The typed config schema: the single source of every default, allowed value and numeric range.

YAML files under conf/ and recipes/ only override these values. Each dataclass is one config group;
`FtConfig` is the root, to which ft.config.registry adds each task's own section (declared beside the
task, e.g. ft.tasks.dpo). Registered in Hydra's ConfigStore by `ft.config`, which checks every value
against the `choices` and bounds declared here before anything heavy is imported.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ft.config.data_schema import FORMATS, DataCacheConfig, DataSourceConfig
from ft.config.names import BNB_STORAGE_DTYPES, OPTIMIZERS, REPORT_TO, SCHEDULERS, TINY_FAMILIES, TORCH_DTYPES
from ft.options import option

TINY_MODEL = "tiny"  # model.name_or_path value that selects the offline tiny Llama
SYNTHETIC_TOOL_TASKS = ["multiply", "lookup"]  # ft.data.synthetic.TOOL_TASKS: tool-calling conversations
SYNTHETIC_TASKS = ["add", "reverse", "upper", "sort", *SYNTHETIC_TOOL_TASKS]  # ft.data.synthetic.TASKS, TOOL_TASKS
STRATEGIES = ["single", "ddp", "fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_offload"]


@dataclass
class TinyModelConfig:
    """Shape of the offline tiny Llama built from config (random weights, locally trained BPE)."""

    hidden_size: int = option(256, ge=1, help="width of the residual stream")
    intermediate_size: int = option(688, ge=1, help="MLP width")
    num_hidden_layers: int = option(4, ge=1, help="decoder layers")
    num_attention_heads: int = option(4, ge=1, help="query heads")
    num_key_value_heads: int = option(2, ge=1, help="key/value heads (grouped-query attention)")
    vocab_size: int = option(1024, ge=1, help="size of the BPE vocabulary trained on the synthetic tasks")
    max_position_embeddings: int = option(1024, ge=1, help="longest sequence the model accepts")
    seed: int = option(0, ge=0, help="seed of the random weights")
    family: str = option("llama", choices=TINY_FAMILIES, help="architecture, chat template and special tokens")


@dataclass
class ModelConfig:
    name_or_path: str = option(TINY_MODEL, help='a hub id, a local directory, or "tiny" (the offline tiny Llama)')
    revision: Optional[str] = option(None, help="hub branch, tag or commit of the model; null: main")
    dtype: str = option(
        "auto", choices=["auto", *TORCH_DTYPES], help="dtype of the loaded weights; auto: from the hardware"
    )
    attn_implementation: str = option(
        "sdpa", choices=["sdpa", "eager", "flash_attention_2"], help="attention kernel (flash_attention_2: CUDA only)"
    )
    trust_remote_code: bool = option(False, help="run modelling code shipped with a hub model")
    chat_template: Optional[str] = option(None, help="a Jinja template replacing the tokenizer's")
    adapter: Optional[str] = option(
        None, help="a finished run's directory: continue training its adapter (its peft settings replace peft.*)"
    )
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class PeftConfig:
    """The adapter. `method` is the PEFT type; DoRA, rsLoRA, PiSSA, LoRA+ and QLoRA are LoRA with the
    flags below (conf/peft/ has one option per named method)."""

    method: str = option(
        "lora", choices=["lora", "ia3", "adalora", "llama_adapter", "none"], help="the PEFT type; none: full fine-tune"
    )
    r: int = option(16, ge=1, help="LoRA rank")
    lora_alpha: int = option(32, gt=0, help="LoRA scaling numerator: updates are scaled by lora_alpha / r")
    lora_dropout: float = option(0.05, ge=0, lt=1, help="dropout on the LoRA input")
    target_modules: Any = option(
        "all-linear", help='"all-linear", a list of module names, or null (PEFT\'s per-model default)'
    )
    bias: str = option("none", choices=["none", "all", "lora_only"], help="which biases are trained")
    modules_to_save: Optional[List[str]] = option(
        None, help="modules trained in full and saved with the adapter, e.g. [lm_head]"
    )
    # LoRA variants
    use_dora: bool = option(False, help="DoRA: weight-decomposed LoRA (a trained magnitude vector per layer)")
    use_rslora: bool = option(False, help="rank-stabilized scaling lora_alpha / sqrt(r)")
    init_lora_weights: Any = option(
        True, help="true, gaussian, pissa or pissa_niter_N (PiSSA: saved converted to plain LoRA)"
    )
    loraplus_lr_ratio: Optional[float] = option(
        None, ge=1, help="set: LoRA+ optimizer, lora_B learns this many times faster"
    )
    # IA3
    feedforward_modules: Optional[List[str]] = option(
        None, help="IA3: modules scaled on their input; null: PEFT's per-model default"
    )
    # AdaLoRA: the rank budget shrinks from init_r to target_r per layer between tinit and total - tfinal
    init_r: int = option(12, ge=1, help="AdaLoRA: starting rank per layer")
    target_r: int = option(8, ge=1, help="AdaLoRA: average final rank per layer")
    tinit: float = option(
        0.1, ge=0, help="AdaLoRA: steps of warmup before pruning; a float < 1 is a fraction of the run"
    )
    tfinal: float = option(0.2, ge=0, help="AdaLoRA: steps at the final budget; a float < 1 is a fraction of the run")
    deltaT: int = option(1, ge=1, help="AdaLoRA: steps between two rank reallocations")
    # Llama-Adapter (PEFT adaption prompt)
    adapter_len: int = option(10, ge=1, help="Llama-Adapter: learned prompt tokens per adapted layer")
    adapter_layers: Optional[int] = option(
        None, ge=1, help="Llama-Adapter: the top N decoder layers; null: all of them"
    )
    # Quantized base (QLoRA): bitsandbytes
    load_in_4bit: bool = option(False, help="load the base quantized to 4 bits (QLoRA)")
    load_in_8bit: bool = option(False, help="load the base quantized to 8 bits (LLM.int8)")
    bnb_4bit_quant_type: str = option("nf4", choices=["nf4", "fp4"], help="4-bit data type")
    bnb_4bit_use_double_quant: bool = option(True, help="quantize the 4-bit quantization constants too")
    bnb_4bit_compute_dtype: str = option(
        "auto", choices=["auto", *TORCH_DTYPES], help="dtype of 4-bit matmuls; auto: the run's precision"
    )
    bnb_4bit_quant_storage: str = option(
        "auto",
        choices=["auto", *BNB_STORAGE_DTYPES],
        help="dtype the 4-bit weights are stored in; auto: uint8, or the compute dtype under distributed=fsdp_qlora",
    )
    quantize_experts: bool = option(
        True,
        help="4-bit: store the fused MoE experts (3-D parameters bitsandbytes skips) in 4-bit too, dequantized per "
        "forward; false: full precision",
    )


@dataclass
class GaloreConfig:
    rank: int = option(128, ge=1, help="rank of the gradient projection")
    update_proj_gap: int = option(200, ge=1, help="steps between recomputing the projection (an SVD per matrix)")
    scale: float = option(0.25, gt=0, help="scale of the projected-back update")


@dataclass
class OptimConfig:
    name: str = option("adamw_torch", choices=OPTIMIZERS, help="a transformers `optim` name")
    weight_decay: float = option(0.0, ge=0, help="decoupled weight decay")
    adam_beta1: float = option(0.9, ge=0, lt=1, help="Adam's first-moment decay")
    adam_beta2: float = option(0.999, ge=0, lt=1, help="Adam's second-moment decay")
    adam_epsilon: float = option(1e-8, gt=0, help="Adam's denominator epsilon")
    max_grad_norm: float = option(1.0, ge=0, help="gradient clipping norm; 0: no clipping")
    optim_args: Optional[str] = option(None, help='extra "k=v,k=v" passed to the optimizer')
    target_modules: Any = option(
        None,
        help="GaLore (optim names galore_*): the Linear layers that get low-rank gradient projection "
        "(transformers' optim_target_modules: names or regexes)",
    )
    galore: GaloreConfig = field(default_factory=GaloreConfig)


@dataclass
class SyntheticDataConfig:
    tasks: List[str] = option(
        ["add", "reverse", "upper", "sort"], choices=SYNTHETIC_TASKS, help="the tasks mixed into the dataset"
    )
    num_examples: int = option(2000, ge=1, help="examples generated, before the eval split")
    seed: int = option(0, ge=0, help="seed of the generator")


@dataclass
class DataConfig:
    source: str = option("synthetic", help='"synthetic", a hub dataset id, or a local file / directory')
    format: str = option(
        "auto", choices=["auto", *FORMATS], help="how the source's rows look; auto: from its columns (README: Data)"
    )
    columns: Dict[str, str] = option({}, help="ft field name -> column in the source")
    subset: Optional[str] = option(None, help="hub dataset config name")
    train_split: str = option("train", help="split of the source to train on")
    eval_split: Optional[str] = option(None, help="a split of the source; null carves eval_size out of train")
    eval_size: float = option(0.05, ge=0, help="a fraction (< 1) or a number of examples (>= 1)")
    max_examples: Optional[int] = option(None, ge=0, help="cap on training examples, after the eval split")
    system_prompt: Optional[str] = option(None, help="prepended as a system turn to conversational data")
    reasoning: str = option(
        "keep",
        choices=["keep", "drop"],
        help="chat turns' reasoning (reasoning_content / thinking): keep, rendered where the chat template puts it "
        "and trained with the answer, or drop",
    )
    seed: int = option(0, ge=0, help="shuffling and the train/eval split")
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    sources: List[DataSourceConfig] = option([], help="a mixture of sources; set: replaces source (README: Mixing)")
    cache: DataCacheConfig = field(default_factory=DataCacheConfig)


@dataclass
class TrainingConfig:
    output_dir: str = option("runs", help="run directories are created under it")
    run_name: Optional[str] = option(None, help="the run directory's name; null: RECIPE-TIMESTAMP")
    max_steps: int = option(-1, ge=-1, help="steps to train; > 0 overrides num_train_epochs")
    num_train_epochs: float = option(1.0, ge=0, help="passes over the training data")
    per_device_train_batch_size: int = option(8, ge=1, help="sequences per step and process")
    per_device_eval_batch_size: int = option(16, ge=1, help="sequences per eval batch and process")
    gradient_accumulation_steps: int = option(1, ge=1, help="micro-batches per optimizer step")
    learning_rate: float = option(2e-4, gt=0, help="peak learning rate")
    lr_scheduler_type: str = option("cosine", choices=SCHEDULERS, help="learning-rate schedule after warmup")
    warmup_steps: float = option(0.03, ge=0, help="an int number of steps, or a float < 1 as a ratio of the run")
    max_length: int = option(1024, ge=1, help="tokens per sequence (longer ones are truncated) or per packed row")
    packing: bool = option(False, help="pack several sequences into each row of max_length tokens")
    packing_strategy: str = option(
        "bfd", choices=["bfd", "bfd_split"], help="best-fit decreasing; sequences isolated by position_ids"
    )
    padding_free: bool = option(False, help="flatten each batch into one row; bfd packing always is")
    neftune_noise_alpha: Optional[float] = option(None, gt=0, help="NEFTune embedding noise, e.g. 5; null: off")
    assistant_only_loss: bool = option(True, help="conversational data: loss on assistant turns only")
    completion_only_loss: Optional[bool] = option(None, help="prompt-completion data: null = TRL's default (on)")
    precision: str = option(
        "auto", choices=["auto", "fp32", "bf16", "fp16"], help="training precision; auto: from the hardware"
    )
    activation_checkpointing: Optional[bool] = option(None, help="null: on with CUDA, off on CPU")
    activation_checkpointing_use_reentrant: bool = option(False, help="torch.utils.checkpoint's use_reentrant")
    use_liger_kernel: bool = option(False, help="Liger Triton kernels (GPU only, needs liger-kernel)")
    torch_compile: bool = option(False, help="torch.compile the model")
    eval_strategy: str = option("steps", choices=["no", "steps", "epoch"], help="when to evaluate")
    eval_steps: float = option(0.2, gt=0, help="an int number of steps, or a float < 1 as a ratio of the run")
    save_strategy: str = option("steps", choices=["no", "steps", "epoch"], help="when to save a checkpoint")
    save_steps: float = option(500, gt=0, help="an int number of steps, or a float < 1 as a ratio of the run")
    save_total_limit: Optional[int] = option(2, ge=1, help="checkpoints kept (the oldest are deleted); null: all")
    logging_steps: float = option(10, gt=0, help="an int number of steps, or a float < 1 as a ratio of the run")
    eval_before_training: bool = option(True, help="report the untrained model's eval loss next to the final")
    report_exact_match: bool = option(
        True,
        help="SFT on the synthetic tasks: at the end, the exact match of greedy answers to 100 held-out prompts, "
        "untrained -> trained (two generation passes over them)",
    )
    seed: int = option(42, ge=0, help="seed of the model initialization, dropout and data order")
    dataloader_num_workers: int = option(0, ge=0, help="data loading processes; 0: in the training process")
    resume: str = option(
        "auto", help="auto (continue the run dir's last complete checkpoint), never, or a checkpoint path"
    )
    overwrite: bool = option(False, help="replace an existing run dir (made by a different config, or finished)")


@dataclass
class LoggingConfig:
    report_to: List[str] = option(["tensorboard"], choices=REPORT_TO, help="experiment trackers to log to")
    project: str = option("ft", help="W&B / trackio project name")


@dataclass
class CallbacksConfig:
    """ft's trainer callbacks (src/ft/run/callbacks.py)."""

    sample_prompts: List[str] = option([], help="prompts generated greedily at every eval")
    sample_max_new_tokens: int = option(48, ge=1, help="tokens generated per sample prompt")
    throughput: bool = option(True, help="tokens/s and peak memory in every training log")
    early_stopping_patience: Optional[int] = option(
        None, ge=1, help="evals without eval_loss improvement before stopping; null: off"
    )
    early_stopping_threshold: float = option(0.0, ge=0, help="minimum eval_loss improvement that counts")


@dataclass
class DistributedConfig:
    """How `python -m ft train` scales out. `single` runs in this process (or in each process an
    outside `accelerate launch` started); any other strategy relaunches under `accelerate launch`."""

    strategy: str = option(
        "single", choices=STRATEGIES, help="one process, or how to launch several (README: Scaling out)"
    )
    num_processes: Optional[int] = option(None, ge=1, help="processes per machine; null: one per GPU")
    num_machines: int = option(1, ge=1, help="machines taking part")
    machine_rank: int = option(0, ge=0, help="this machine's rank; 0 hosts the rendezvous")
    main_process_ip: str = option("127.0.0.1", help="address of machine 0")
    main_process_port: int = option(29500, ge=1, le=65535, help="rendezvous port on machine 0")
    timeout_s: int = option(1800, ge=1, help="how long a rank waits for the others (process group, barriers)")


@dataclass
class HubConfig:
    """Pushing the finished run to the Hugging Face Hub (`ft push` takes the same settings)."""

    push: bool = option(False, help="push at the end of training (main process only)")
    repo_id: Optional[str] = option(None, help="the Hub repo to push to: owner/name")
    private: bool = option(False, help="create the repo private")
    revision: Optional[str] = option(None, help="a branch; created if missing. null: main")
    license: Optional[str] = option(None, help="written into the model card's metadata, e.g. apache-2.0")


@dataclass
class FtConfig:
    task: str = option(
        "sft",
        help="the training task: one of ft's (ft train --help lists them), or my_pkg.my_module: a task of your own",
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    recipe: Optional[str] = option(None, help="the recipe's name, recorded from the recipe=NAME choice")
