"""task=vlm's rules on the config alone, before anything loads."""

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
