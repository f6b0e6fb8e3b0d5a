"""Rules that need the model: its architecture (config) and its loaded modules."""

from ft.config.schema import PeftConfig
from ft.errors import FtError
from ft.models.adapters import fused_experts, linear_module_names
from ft.run.distributed import sharded_by_fsdp


def check_architecture(cfg: PeftConfig, model_config, name: str) -> None:
    """Rules that need the model's config (loaded before its weights)."""
    if cfg.method != "llama_adapter":
        return
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    if model_config.model_type not in TRANSFORMERS_MODEL_CONFIG:
        raise FtError(
            f"peft.method=llama_adapter needs Llama-family attention ({', '.join(TRANSFORMERS_MODEL_CONFIG)}); "
            f"{name} is a '{model_config.model_type}' model: use peft=lora"
        )
    if cfg.adapter_layers and cfg.adapter_layers > model_config.num_hidden_layers:
        raise FtError(
            f"peft.adapter_layers={cfg.adapter_layers} but {name} has {model_config.num_hidden_layers} layers: "
            f"set peft.adapter_layers <= {model_config.num_hidden_layers} (or null for all)"
        )


def check_target_modules(cfg: PeftConfig, model) -> None:
    """Every name in peft.target_modules must match a module of the loaded model."""
    if cfg.method in ("none", "llama_adapter") or cfg.target_modules is None or cfg.target_modules == "all-linear":
        return
    import re

    module_names = [name for name, _ in model.named_modules()]
    if isinstance(cfg.target_modules, str):  # PEFT reads a string as a regex over full module names
        unknown = [] if any(re.fullmatch(cfg.target_modules, n) for n in module_names) else [cfg.target_modules]
    else:
        short = {n.rsplit(".", 1)[-1] for n in module_names}
        unknown = [
            t for t in cfg.target_modules if t not in short and not any(n.endswith("." + t) for n in module_names)
        ]
    if unknown:
        raise FtError(
            f"peft.target_modules: {', '.join(map(str, unknown))} not found in the model; its linear modules are: "
            f"{', '.join(linear_module_names(model))} (or use all-linear)"
        )


def check_fused_experts(cfg: PeftConfig, model) -> None:
    """PEFT adapts a fused expert parameter with plain LoRA only: no dropout (it cannot factor x out of
    B(A(dropout(x)))) and no DoRA."""
    if cfg.method != "lora" or not (cfg.lora_dropout or cfg.use_dora) or not (experts := fused_experts(model)):
        return
    targets = cfg.target_modules
    if targets != "all-linear" and not any("expert" in str(t) for t in (targets or [])):
        return
    where = f"the fused MoE experts ({experts[0]} and {len(experts) - 1} more)"
    if cfg.use_dora:
        problem, fix = f"peft.use_dora=true: PEFT has no DoRA for {where}", "peft=lora"
    else:
        problem, fix = (
            f"peft.lora_dropout={cfg.lora_dropout}: PEFT has no LoRA dropout on {where}",
            "peft.lora_dropout=0",
        )
    raise FtError(
        f"{problem}: set {fix}, or name peft.target_modules without the experts (e.g. [q_proj,k_proj,v_proj,o_proj])"
    )


def check_quantized_experts(cfg, model) -> None:
    """ft's 4-bit experts (ft.models.experts) hold no storage of their own for FSDP to shard: refused
    under FSDP (DDP and DeepSpeed ZeRO-2 train with them: tested on 2 CPU processes)."""
    peft, strategy = cfg.peft, cfg.distributed.strategy
    if sharded_by_fsdp(cfg) and peft.load_in_4bit and peft.quantize_experts and fused_experts(model):
        raise FtError(
            f"peft.quantize_experts=true: FSDP cannot shard ft's 4-bit MoE experts (distributed={strategy}): set "
            f"peft.quantize_experts=false (experts in full precision), or use distributed=ddp or zero2"
        )
