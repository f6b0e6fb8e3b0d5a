"""task=vlm's rules on the config alone, before anything loads; and what this machine must have for the model
(check_inputs, before the run directory is made)."""

from ft.config.schema import TINY_MODEL
from ft.errors import FtError


def check_config(cfg) -> None:
    if cfg.model.name_or_path == TINY_MODEL:
        raise FtError(
            "task=vlm trains a vision-language model, and model.name_or_path=tiny is ft's tiny text model: use "
            "model.name_or_path=tiny-vlm-gemma3 (or tiny-vlm-llava, tiny-vlm-smolvlm), or recipe=tiny_vlm_gemma3"
        )
    if cfg.peft.method != "lora":
        raise FtError(f"task=vlm trains LoRA adapters (peft=lora or qlora), not peft.method={cfg.peft.method}")
    targets = cfg.peft.target_modules
    names = list(targets) if isinstance(targets, (list, tuple)) else []
    if targets != "all-linear" and not (names and all(isinstance(name, str) for name in names)):
        raise FtError(
            f"peft.target_modules={targets}: task=vlm takes all-linear (the language model's linear layers) or a "
            f"list of layer names such as [q_proj, v_proj]"
        )


def check_inputs(cfg) -> None:
    """A tiny-vlm-* model whose processor transformers cannot make here (Qwen2.5-VL without torchvision) is
    refused before the run starts, not after its data is read."""
    from ft.tasks.vision_language import tiny
    from ft.tasks.vision_language.schema import TINY_VLM_MODELS

    name = cfg.model.name_or_path
    if name in TINY_VLM_MODELS and (why := tiny.processor_missing(name)):
        raise FtError(
            f"model.name_or_path={name}: {why}; install the torchvision built for your torch, or use another model"
        )
