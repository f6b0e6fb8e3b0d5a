"""Load the base model and its tokenizer: a hub id, a local directory, or the offline tiny model."""

from pathlib import Path

from ft.config.schema import TINY_MODEL, ModelConfig, PeftConfig
from ft.models import adapters, tiny


def resolve_path(cfg: ModelConfig) -> str:
    """Where from_pretrained loads from; builds the tiny model on first use."""
    if cfg.name_or_path == TINY_MODEL:
        return str(tiny.ensure(cfg.tiny))
    return (
        str(Path(cfg.name_or_path).expanduser()) if Path(cfg.name_or_path).expanduser().is_dir() else cfg.name_or_path
    )


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


def load_model(cfg: ModelConfig, dtype, num_labels: int | None = None, **kwargs):
    """AutoModelForCausalLM with the configured attention; extra kwargs go to from_pretrained. With
    `num_labels`, AutoModelForSequenceClassification instead: the same body under a new, randomly
    initialized linear head (`score`) with that many outputs, e.g. 1 for a reward model."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if cfg.trust_remote_code:
        print(f"ft: warning: model.trust_remote_code=true runs Python code shipped with {cfg.name_or_path}")
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    auto_class = AutoModelForCausalLM if num_labels is None else AutoModelForSequenceClassification
    return auto_class.from_pretrained(
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


def quantization_config(peft: PeftConfig, dtype, fsdp: bool = False):
    """The BitsAndBytesConfig for a k-bit base (QLoRA), or None. `dtype` is the run's compute dtype.
    FSDP shards parameters by dtype, so under FSDP the packed 4-bit weights are stored in the compute
    dtype (bnb_4bit_quant_storage) instead of uint8."""
    if not adapters.is_quantized(peft):
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
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=peft.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=peft.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=storage,
    )


def disable_4bit_cpu_repack(model) -> None:
    """bitsandbytes 0.50, on CPUs with AVX512-BF16 only, repacks each 4-bit weight for a bf16 inference
    kernel on its first eval-mode forward without grad, and keeps it packed. ft opts every 4-bit model
    it loads out of that (the module attribute bitsandbytes reads for it), for three measured reasons:
    training forwards after an evaluation ran the inference kernel, which has no backward, so
    gradients through every 4-bit layer were wrong (relative error 1.12, tests/test_quantized.py);
    the repack needs out_features % 32 == 0 and in_features % 64 == 0, so other shapes crashed at the
    first evaluation; and a reloaded run's logits differed from the trained model's by 0.012. With
    it off, every CPU computes the same numbers on the same code path."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def quantize_experts(model, peft: PeftConfig) -> dict | None:
    """Under QLoRA 4-bit with peft.quantize_experts: the fused MoE experts, which bitsandbytes skips, in
    4-bit too (ft.models.experts), as the run's peft.bnb_4bit_quant_type and double quant. Returns the
    measured bytes of the experts before and after, or None when there was nothing to quantize."""
    from ft.models import experts

    names = adapters.fused_experts(model)
    if not (peft.load_in_4bit and peft.quantize_experts and names):
        return None
    before = sum(p.numel() * p.element_size() for p in model.parameters() if p.dim() == 3)
    experts.quantize(model, names, peft.bnb_4bit_quant_type, peft.bnb_4bit_use_double_quant)
    after = sum(p.stored_bytes() for p in experts.quantized(model))
    return {"expert_bytes_before": before, "expert_bytes": after}


def prepare_experts(model, peft: PeftConfig, name: str) -> None:
    """A k-bit base just loaded: its fused MoE experts in 4-bit (with one line saying what they take), or
    the warning that they stay in full precision."""
    quantized = quantize_experts(model, peft)
    if quantized is None:
        warn_unquantized_experts(model, name)
        return
    print(
        f"ft: fused MoE experts of {name} in 4-bit {peft.bnb_4bit_quant_type}: "
        f"{quantized['expert_bytes'] / 2**20:.1f} MiB (were {quantized['expert_bytes_before'] / 2**20:.1f} MiB)",
        flush=True,
    )


def warn_unquantized_experts(model, name: str) -> dict | None:
    """A k-bit base whose MoE experts bitsandbytes left in full precision (transformers 5 fuses each
    layer's experts into 3-D parameters, and bitsandbytes quantizes nn.Linear layers only; ft quantizes
    them itself under 4-bit unless peft.quantize_experts=false): one warning line with what it costs.
    Returns the measured parameter bytes (base, experts), or None."""
    experts = [
        p for name_ in adapters.fused_experts(model) for p in model.get_submodule(name_).parameters(recurse=False)
    ]
    if not experts or all(p.element_size() == 1 for p in experts):
        return None
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    expert_bytes = sum(p.numel() * p.element_size() for p in experts)
    as_4bit = sum(p.numel() for p in experts) // 2
    print(
        f"ft: warning: bitsandbytes leaves the fused MoE experts of {name} unquantized: they hold "
        f"{expert_bytes / 2**20:.1f} MiB ({100 * expert_bytes / total:.0f}%) of the base's {total / 2**20:.1f} MiB in "
        f"{experts[0].dtype}; 4-bit they would take {as_4bit / 2**20:.1f} MiB (peft=qlora with "
        "peft.quantize_experts=true)",
        flush=True,
    )
    return {"base_bytes": total, "expert_bytes": expert_bytes, "experts_4bit_bytes": as_4bit}
