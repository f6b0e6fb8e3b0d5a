"""PEFT configs from the `peft` group. TRL's SFTTrainer does the wrapping (get_peft_model)."""

from ft.schema import PeftConfig


def build_peft_config(cfg: PeftConfig):
    """A peft.PeftConfig, or None for a full fine-tune."""
    if cfg.method == "none":
        return None
    from peft import LoraConfig

    target = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=target,
        bias=cfg.bias,
        modules_to_save=list(cfg.modules_to_save) if cfg.modules_to_save else None,
    )
