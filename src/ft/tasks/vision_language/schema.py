"""The config section of task=vlm (`vision.*`): LoRA / QLoRA on a vision-language model's language model
from image+text conversations. The batch size, learning rate, steps, precision, optimizer and LoRA rank
are the shared training / optim / peft keys."""

from dataclasses import dataclass
from typing import Optional

from ft.options import option

# model.name_or_path values of the offline tiny vision-language models: "tiny-vlm-" + a family
TINY_VLM_FAMILIES = ["qwen2_5_vl", "gemma3", "llava", "smolvlm"]
TINY_VLM_MODELS = [f"tiny-vlm-{family}" for family in TINY_VLM_FAMILIES]


@dataclass
class VisionConfig:
    """task=vlm: what of a vision-language model trains besides the language model's LoRA (README:
    Vision-language)."""

    train_projector: bool = option(
        False, help="train the projector (the vision-to-text connector) in full, saved with the adapter"
    )
    lora_vision_tower: bool = option(False, help="also put LoRA on the vision tower's linear layers")
    quantize_vision_tower: bool = option(
        False, help="QLoRA: quantize the vision tower and projector too; false: they stay in the compute dtype"
    )
    min_pixels: Optional[int] = option(
        None, ge=1, help="fewest pixels an image is resized to, where the processor has it (Qwen2.5-VL); null: its own"
    )
    max_pixels: Optional[int] = option(
        None, ge=1, help="most pixels an image is resized to, where the processor has it (Qwen2.5-VL); null: its own"
    )
