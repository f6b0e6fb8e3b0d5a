"""Load the base model and its tokenizer: a hub id, a local directory, or the offline tiny model."""

from pathlib import Path

from ft.config.schema import TINY_MODEL, ModelConfig, PeftConfig
from ft.models import tiny


def resolve_path(cfg: ModelConfig) -> str:
    """Where from_pretrained loads from; builds the tiny model on first use."""
    if cfg.name_or_path == TINY_MODEL:
        return str(tiny.ensure(cfg.tiny))
    return str(Path(cfg.name_or_path).expanduser()) if Path(cfg.name_or_path).expanduser().is_dir() else cfg.name_or_path


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_path(cfg), revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template
    if tokenizer.pad_token is None:  # many base models ship without one; EOS as pad is the usual fix
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(cfg: ModelConfig, dtype, **kwargs):
    """AutoModelForCausalLM with the configured attention; extra kwargs go to from_pretrained."""
    from transformers import AutoModelForCausalLM

    if cfg.trust_remote_code:
        print(f"ft: warning: model.trust_remote_code=true runs Python code shipped with {cfg.name_or_path}")
    return AutoModelForCausalLM.from_pretrained(
        resolve_path(cfg),
        revision=cfg.revision,
        dtype=dtype,
        attn_implementation=cfg.attn_implementation,
        trust_remote_code=cfg.trust_remote_code,
        **kwargs,
    )


def load_config(cfg: ModelConfig):
    """The model's transformers config, without its weights (checks that need the architecture)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_path(cfg), revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)


def quantization_config(peft: PeftConfig, dtype, model_config, fsdp: bool = False):
    """The BitsAndBytesConfig for a k-bit base (QLoRA), or None. `dtype` is the run's compute dtype.
    FSDP shards parameters by dtype, so under FSDP the packed 4-bit weights are stored in the compute
    dtype (bnb_4bit_quant_storage) instead of uint8. Without CUDA, layers bitsandbytes' CPU kernels
    cannot take stay unquantized (unquantizable_on_cpu)."""
    if not (peft.load_in_4bit or peft.load_in_8bit):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if peft.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if peft.bnb_4bit_compute_dtype == "auto" else getattr(torch, peft.bnb_4bit_compute_dtype)
    if peft.bnb_4bit_quant_storage != "auto":
        storage = getattr(torch, peft.bnb_4bit_quant_storage)
    else:
        storage = compute if fsdp else torch.uint8
    skip = None if torch.cuda.is_available() else unquantizable_on_cpu(model_config) or None
    return BitsAndBytesConfig(
        llm_int8_skip_modules=skip,
        load_in_4bit=True,
        bnb_4bit_quant_type=peft.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=peft.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=storage,
    )


# bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks a 4-bit weight for its inference kernel in blocks
# of 32 output rows, and quantizes in blocks of 64 inputs: a layer of another shape fails at the first
# evaluation or generation. Real models' layers are multiples; tiny or pruned ones may not be.
CPU_4BIT_IN, CPU_4BIT_OUT = 64, 32


def unquantizable_on_cpu(model_config) -> list[str]:
    """The linear layers bitsandbytes' CPU 4-bit kernels cannot take, and with them the output head
    (transformers skips it by default, but not once given a list); [] when every layer fits."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # the modules without weights: nothing is allocated
        model = AutoModelForCausalLM.from_config(model_config)
    odd = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
           and (module.in_features % CPU_4BIT_IN or module.out_features % CPU_4BIT_OUT)]
    if not odd:
        return []
    shown = ", ".join(odd[:3]) + (", ..." if len(odd) > 3 else "")
    print(f"ft: note: keeping {len(odd)} linear layers unquantized ({shown}): bitsandbytes' CPU 4-bit kernels "
          f"need in_features % {CPU_4BIT_IN} == 0 and out_features % {CPU_4BIT_OUT} == 0", flush=True)
    head = model.get_output_embeddings()
    return odd + [name for name, module in model.named_modules() if module is head and name not in odd]


def keep_4bit_weights_trainable(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks each 4-bit weight for a faster inference kernel on
    its first eval-mode forward without grad, and keeps it packed; training forwards after that run the
    inference kernel, which has no backward, so gradients through those layers are silently wrong
    (measured: relative error ~1.0 after one evaluation). A model under training evaluates between
    steps, so it opts out of the repack (the module attribute bitsandbytes reads for this)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
