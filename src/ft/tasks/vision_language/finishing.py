"""A finished vision-language run loaded back (base + adapter, through AutoModelForImageTextToText), and
`ft merge` on it: the adapter folded into the base, saved with the run's processor (its training chat
template included), a standalone model for AutoModelForImageTextToText + AutoProcessor.

As for text runs (ft.finish.merge), a QLoRA run is merged into its base dequantized to the run's dtype,
never into 4-bit weights.
"""

from pathlib import Path

from ft.config import registry
from ft.finish import merge as text_merge


def dtype_of(cfg):
    """The run's dtype: model.dtype, else bf16 where the GPU has it, else fp32 (as ft.finish.loading)."""
    import torch

    if cfg.model.dtype != "auto":
        return getattr(torch, cfg.model.dtype)
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def load_model(run_dir: Path, cfg, dequantize: bool = False):
    """The trained model in eval mode: the base as training loaded it (4-bit language model for QLoRA, the
    vision tower and projector as vision.quantize_vision_tower left them), dequantized with `dequantize`,
    and the run's adapter."""
    from peft import PeftModel

    from ft import models as text_models
    from ft.tasks.vision_language import models

    dtype = dtype_of(cfg)
    vision = registry.get(cfg.task).settings(cfg)  # vision.* or vlm_dpo.*: both are VisionConfig
    quantization = models.quantization_config(cfg.model, cfg.peft, vision, dtype)
    base = models.load_model(cfg.model, dtype, quantization)
    if quantization is not None:
        text_models.disable_4bit_cpu_repack(base)
        if dequantize:
            base = base.dequantize(dtype=dtype)
    return PeftModel.from_pretrained(base, str(run_dir)).eval()


def merge_into(run_dir: Path, cfg, out: Path):
    """Save the merged model and the run's processor to out; return (model, processor)."""
    from transformers import AutoProcessor

    model = load_model(run_dir, cfg, dequantize=True).merge_and_unload()
    processor = AutoProcessor.from_pretrained(str(run_dir))
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return model, processor


def merge(options: text_merge.MergeOptions) -> Path:
    """`ft merge` on a vision-language run: the text merge's checks and atomic write, this model class."""
    return text_merge.merge(options, merge_into=merge_into)
