"""Expected training memory per device, from the model's config alone (docs/memory.md has the formulas).

The parameters are counted exactly: the model, and the PEFT adapter on it, are built on the `meta` device,
which allocates nothing. The rest is arithmetic on those counts and the recipe: what each parameter takes
as stored (16/32-bit, or 4/8-bit under bitsandbytes), its gradient, the optimizer's state, and the
activations a micro-batch keeps for the backward pass. It is an estimate: allocator caching,
fragmentation and library workspaces come on top.
"""

import copy
import dataclasses
from dataclasses import dataclass

from ft.config.schema import FtConfig
from ft.models import adapters

GIB = 2**30
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # model.dtype -> BYTES's names
# bitsandbytes 4-bit: two weights a byte, plus one absmax per block of 64 weights: a uint8 under double
# quantization, whose own fp32 absmax covers 256 blocks; else an fp32 absmax.
NF4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
EIGHT_BIT_MIN_SIZE = 4096  # bitsandbytes 8-bit optimizers keep fp32 state for smaller tensors
CUDA_CONTEXT_GIB = 0.5  # CUDA context and kernels: outside torch's allocator; varies by driver and card
# Saved for the backward pass, per token, by one Llama-style decoder layer with sdpa / flash attention, in
# elements of the compute dtype: 3h for each RMSNorm (its input, the normalized input, the scaled output),
# the attention's rotated queries (h), keys and values (2 x kv), its output before and after the reshape
# the output projection takes (2h), and in the MLP the gate and up projections, the activation and the
# product (4 x I).
NORM_ELEMENTS, ATTENTION_ELEMENTS, MLP_ELEMENTS = 3, 2, 4
# The loss: the log-softmax of the logits (fp32) is kept for the backward pass, which adds its gradient and
# the logits' gradient (fp32 both): 12 bytes per logit; with 16-bit compute also the logits' gradient cast back.
LOSS_BYTES_PER_LOGIT = 12
SHARDED = {"fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_offload"}
SHARDS_WEIGHTS = {"fsdp", "fsdp_qlora", "zero3", "zero3_offload"}


@dataclass
class Census:
    """The model's parameters as ft trains them, counted on the meta device."""

    total: int  # the base model's parameters
    quantizable: int  # in the Linear layers bitsandbytes quantizes (all but the output head)
    quantizable_rows: int  # their output features (8-bit: one fp32 scale per row)
    experts: int  # in fused MoE experts (3-D parameters): 4-bit under QLoRA with peft.quantize_experts
    adapter: int  # parameters PEFT adds (LoRA A/B, ...)
    saved_copies: int  # trainable copies of modules_to_save
    trainable: int  # what the optimizer updates: adapter + copies, or the whole model
    small_trainable: int  # of those, in tensors under EIGHT_BIT_MIN_SIZE elements
    layer: int  # one decoder layer's parameters (gathered whole under FSDP / ZeRO-3)
    layers: int
    adapter_rank_per_layer: int  # sum of LoRA ranks over one layer's adapted modules
    adapter_inputs_per_layer: int  # sum of input features of one layer's adapted modules (dropout copies)
    factored_state: int  # Adafactor: rows + columns of each trainable matrix, size of each vector


@dataclass
class Component:
    name: str
    gib: float
    detail: str


@dataclass
class Setting:
    """What the arithmetic needs besides the config: decided from the hardware (or device=) by the command."""

    device: str  # cuda | cpu
    precision: str  # fp32 | bf16 | fp16
    checkpointing: bool
    world_size: int  # processes that share the sharded state


def meta_model(model_config, head: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    with torch.device("meta"):
        if head == "sequence_classification":  # a reward model: one output
            model_config = copy.deepcopy(model_config)
            model_config.num_labels = 1
            return AutoModelForSequenceClassification.from_config(model_config)
        return AutoModelForCausalLM.from_config(model_config)


def count(cfg: FtConfig, model_config, head: str) -> Census:
    """The census of the model `model_config` describes, with the recipe's adapter on it."""
    import torch

    model = meta_model(model_config, head)
    output = model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not output]
    total = sum(p.numel() for p in model.parameters())
    decoder = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList))
    layer = sum(p.numel() for p in decoder[0].parameters())
    # PiSSA's initialization takes an SVD of real weights; no initialization changes the shapes
    shapes_only = dataclasses.replace(cfg.peft, init_lora_weights=True)
    task_type = "CAUSAL_LM" if head == "causal_lm" else "SEQ_CLS"
    peft_config = adapters.build_peft_config(shapes_only, model_config, 1000, task_type)
    if peft_config is not None:
        import warnings

        from peft import get_peft_model

        with warnings.catch_warnings():  # PEFT asks a deprecated transformers attribute (a FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, peft_config)  # the schedule (1000 steps) does not change the shapes
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    adapter = sum(p.numel() for n, p in trainable if "modules_to_save" not in n) if peft_config else 0
    # LoRA's A matrices in one layer (PEFT adapted it in place): (rank, input features) each
    lora_a = [m.lora_A["default"] for m in decoder[0].modules() if "default" in getattr(m, "lora_A", {})]
    lora_a = [getattr(a, "weight", a).shape for a in lora_a]  # AdaLoRA keeps a bare Parameter
    return Census(
        total=total,
        quantizable=sum(m.weight.numel() for m in linears),
        quantizable_rows=sum(m.out_features for m in linears),
        experts=sum(p.numel() for p in model.parameters() if p.dim() == 3),
        adapter=adapter,
        saved_copies=sum(p.numel() for n, p in trainable if "modules_to_save" in n),
        trainable=sum(p.numel() for _, p in trainable),
        small_trainable=sum(p.numel() for _, p in trainable if p.numel() < EIGHT_BIT_MIN_SIZE),
        layer=layer,
        layers=len(decoder),
        adapter_rank_per_layer=sum(shape[0] for shape in lora_a),
        adapter_inputs_per_layer=sum(shape[-1] for shape in lora_a),
        factored_state=sum(sum(p.shape) if p.dim() == 2 else p.numel() for _, p in trainable),
    )


def weight_dtype(cfg: FtConfig, setting: Setting) -> str:
    return DTYPE_NAMES[cfg.model.dtype] if cfg.model.dtype != "auto" else setting.precision


def trainable_dtype(cfg: FtConfig, setting: Setting) -> str:
    """PEFT keeps adapters in fp32 (its autocast_adapter_dtype), except under ZeRO-3, where TRL keeps them in
    the base's dtype; TRL stores a quantized base's trainable weights in bf16 (ft: fp32 on fp32 compute);
    a full fine-tune trains the weights in the dtype they are loaded in."""
    if cfg.peft.method == "none":
        return weight_dtype(cfg, setting)
    if adapters.is_quantized(cfg.peft):
        return "fp32" if setting.precision == "fp32" else "bf16"
    return weight_dtype(cfg, setting) if cfg.distributed.strategy.startswith("zero3") else "fp32"


def weights(cfg: FtConfig, census: Census, setting: Setting) -> Component:
    trained = trainable_dtype(cfg, setting)
    extra = (census.adapter + census.saved_copies) * BYTES[trained]
    if cfg.peft.load_in_4bit:
        # prepare_model_for_kbit_training casts what stays unquantized (embeddings, head, norms) to fp32
        four_bit = census.quantizable + (census.experts if cfg.peft.quantize_experts else 0)
        rest = census.total - four_bit
        stored = four_bit * NF4_BYTES[cfg.peft.bnb_4bit_use_double_quant] + rest * 4
        detail = f"{four_bit:,} in 4-bit + constants, {rest:,} fp32"
    elif cfg.peft.load_in_8bit:
        rest = census.total - census.quantizable
        stored = census.quantizable + census.quantizable_rows * 4 + rest * 4
        detail = f"{census.quantizable:,} in 8-bit + row scales, {rest:,} fp32"
    else:
        stored = census.total * BYTES[weight_dtype(cfg, setting)]
        detail = f"{census.total:,} {weight_dtype(cfg, setting)}"
    if extra:
        detail += f"; + {census.adapter + census.saved_copies:,} trainable {trained}"
    total = stored + extra
    if cfg.distributed.strategy in SHARDS_WEIGHTS:
        layer = census.layer * total / (census.total + census.adapter + census.saved_copies)
        offloaded = cfg.distributed.strategy == "zero3_offload"
        total = layer + (0 if offloaded else total / setting.world_size)
        detail += "; on CPU, but one layer gathered" if offloaded else f"; / {setting.world_size} + one layer gathered"
    return Component("weights", total / GIB, detail)


def gradients(cfg: FtConfig, census: Census, setting: Setting) -> Component:
    dtype = trainable_dtype(cfg, setting)
    total = census.trainable * BYTES[dtype]
    detail = f"{census.trainable:,} trainable {dtype}"
    if cfg.distributed.strategy == "ddp":
        total *= 2
        detail += "; x 2: DDP's gradient buckets"
    elif cfg.distributed.strategy in SHARDED:
        total /= setting.world_size
        detail += f"; / {setting.world_size}"
    return Component("gradients", total / GIB, detail)


# State tensors per trainable parameter, by the optimizer's family (the first one its name contains)
STATES = {"adamw": 2, "ademamix": 3, "lion": 1, "rmsprop": 1, "adagrad": 1, "sgd": 0, "lomo": 0}


def optimizer_states(name: str) -> int:
    return next((states for family, states in STATES.items() if family in name), 2)


def optimizer(cfg: FtConfig, census: Census, setting: Setting) -> Component:
    name = cfg.optim.name
    dtype = trainable_dtype(cfg, setting)
    if name in ("adafactor", "adalomo") or name.startswith("galore_adafactor"):
        total, detail = census.factored_state * 4, f"{name}: factored second moment, fp32"
    else:
        states = optimizer_states(name)
        if "4bit" in name:  # torchao's 4-bit AdamW
            total = states * census.trainable / 2
            detail = f"{name}: {states} states x 0.5 byte"
        elif "8bit" in name:
            large = census.trainable - census.small_trainable
            total = states * (large + census.small_trainable * 4)
            detail = f"{name}: {states} states x 1 byte (fp32 under {EIGHT_BIT_MIN_SIZE:,} elements)"
        else:
            per_state = 4 if name.endswith("32bit") or "bnb" in name else BYTES[dtype]
            total = states * per_state * census.trainable
            detail = f"{name}: {states} states x {per_state} bytes"
        if name.startswith("galore"):
            detail += " (an upper bound: GaLore keeps the target layers' state low-rank)"
        if name.startswith("paged"):
            detail += ", paged (spills to CPU RAM under pressure)"
    if cfg.distributed.strategy.startswith("zero") and dtype != "fp32":
        total += census.trainable * 4
        detail += "; + DeepSpeed's fp32 master weights"
    if cfg.distributed.strategy == "zero3_offload":
        return Component("optimizer state", 0.0, f"{detail}: on CPU ({total / GIB:.2f} GiB of RAM over all ranks)")
    if cfg.distributed.strategy in SHARDED:
        total /= setting.world_size
        detail += f"; / {setting.world_size}"
    return Component("optimizer state", total / GIB, detail)


def layer_elements(cfg: FtConfig, model_config, census: Census) -> int:
    """Elements one decoder layer keeps per token for its backward pass (see the constants above)."""
    h = model_config.hidden_size
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or h // heads
    kv = getattr(model_config, "num_key_value_heads", None) or heads
    mlp = getattr(model_config, "moe_intermediate_size", None) or model_config.intermediate_size
    mlp *= getattr(model_config, "num_experts_per_tok", None) or 1  # a token goes through its top-k experts
    elements = (
        2 * NORM_ELEMENTS * h + heads * head_dim + 2 * kv * head_dim + ATTENTION_ELEMENTS * h + MLP_ELEMENTS * mlp
    )
    elements += census.adapter_rank_per_layer  # LoRA's low-rank intermediates
    if cfg.peft.lora_dropout > 0:  # each adapted module's input, dropped out, is a copy
        elements += census.adapter_inputs_per_layer
    return elements


def activations(cfg: FtConfig, model_config, census: Census, setting: Setting, head: str) -> Component:
    t = cfg.training
    tokens = t.per_device_train_batch_size * t.max_length
    size = BYTES[setting.precision]
    h = model_config.hidden_size
    layer = layer_elements(cfg, model_config, census)
    # checkpointing keeps each layer's input and recomputes one layer at a time in the backward pass
    kept = census.layers * h + layer if setting.checkpointing else census.layers * layer
    kept += NORM_ELEMENTS * h  # the final norm
    if cfg.model.attn_implementation == "eager":  # the attention probabilities, fp32 then cast: s x s per head
        matrices = 1 if setting.checkpointing else census.layers
        kept += matrices * model_config.num_attention_heads * t.max_length * (4 + size) // size
    logits = model_config.vocab_size if head == "causal_lm" else 1
    loss = logits * (LOSS_BYTES_PER_LOGIT + (size if size != 4 else 0))
    total = tokens * (kept * size + loss)
    checkpointing = "on" if setting.checkpointing else "off"
    detail = (
        f"{t.per_device_train_batch_size} x {t.max_length} tokens, checkpointing {checkpointing}: "
        f"{tokens * kept * size / GIB:.2f} layers + {tokens * loss / GIB:.2f} logits and loss"
    )
    return Component("activations", total / GIB, detail)


def stored_dtype(model_config, setting: Setting) -> str:
    """The dtype of the checkpoint's weights (config.json's `dtype`); unknown: the run's precision."""
    dtype = str(getattr(model_config, "dtype", None) or "").removeprefix("torch.")
    return DTYPE_NAMES.get(dtype, setting.precision)


def mapped_checkpoint(cfg: FtConfig, model_config, census: Census, setting: Setting) -> Component:
    """On a CPU, from_pretrained maps the checkpoint file and keeps it mapped: the pages it read stay resident.
    Weights loaded unquantized in the stored dtype are those very pages (counted under weights); otherwise the
    weights are copies and the whole file counts again."""
    stored = stored_dtype(model_config, setting)
    copied = adapters.is_quantized(cfg.peft) or stored != weight_dtype(cfg, setting)
    size = census.total * BYTES[stored] if copied else 0
    detail = f"{stored} checkpoint, mapped by from_pretrained; " + ("copied when loaded" if copied else "the weights")
    return Component("checkpoint file", size / GIB, detail)


def components(cfg: FtConfig, model_config, census: Census, setting: Setting, head: str) -> list[Component]:
    """The model-dependent memory of one device, one Component per row of `ft estimate`'s table."""
    rows = [
        weights(cfg, census, setting),
        gradients(cfg, census, setting),
        optimizer(cfg, census, setting),
        activations(cfg, model_config, census, setting, head),
    ]
    if setting.device == "cpu":
        rows.append(mapped_checkpoint(cfg, model_config, census, setting))
    return rows
