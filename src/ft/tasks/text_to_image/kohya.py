"""A text-to-image run's LoRA in kohya's format (`lora_kohya.safetensors`), the one AUTOMATIC1111, Forge
and ComfyUI load: keys `lora_unet_<module>` / `lora_te_<module>` (SDXL: `lora_te1_`, `lora_te2_`) with
`.lora_down.weight`, `.lora_up.weight` and `.alpha`, made from the diffusers file by diffusers' own
converters (to PEFT's names: convert_unet_state_dict_to_peft for the UNet, convert_state_dict_to_peft for
the text encoders; then convert_state_dict_to_kohya), plus kohya's `ss_*` metadata.

What the converters leave to us: the `.alpha` of each module (they write the rank, i.e. scale 1; ours
is peft.lora_alpha), SD 1.x/2.x's text encoder prefix (`lora_te_`, not SDXL's `lora_te1_`), and the
`text_model_` part of the text encoders' module names, which transformers 5's CLIPTextModel no longer has.
"""

import json
import math
import re
from pathlib import Path

from ft.errors import FtError
from ft.run import rundir

KOHYA_WEIGHTS = "lora_kohya.safetensors"
TEXT_ENCODER = re.compile(r"^(lora_te[12]?_)(?!text_model_)")


def refusal(cfg) -> str | None:
    """Why this run's LoRA has no kohya form, or None."""
    if _pipeline(cfg) in ("FluxPipeline", "StableDiffusion3Pipeline"):
        return (
            "format=kohya is written for SD 1.x / 2.x and SDXL runs; a Flux or SD3 LoRA stays in diffusers' format "
            f"({rundir.LORA_WEIGHTS})"
        )
    if cfg.peft.use_dora:
        return "format=kohya: this run trains DoRA, which kohya's LoRA format does not carry"
    return None


def state_dict(run_dir: Path, cfg, weights: str = rundir.LORA_WEIGHTS) -> tuple[dict, dict]:
    """(tensors, metadata) of the run's diffusers LoRA file `weights` in kohya's format."""
    import torch
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_kohya,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )
    from safetensors.torch import load_file

    xl, diffusers_format = _is_xl(cfg), load_file(run_dir / weights)
    unet = {k: v for k, v in diffusers_format.items() if k.startswith("unet.")}
    text_encoders = {k: v for k, v in diffusers_format.items() if not k.startswith("unet.")}
    peft_format = convert_unet_state_dict_to_peft(unet)
    if text_encoders:
        peft_format |= convert_state_dict_to_peft(text_encoders)
    kohya = convert_state_dict_to_kohya(peft_format)
    p = cfg.peft
    alpha = p.lora_alpha * math.sqrt(p.r) if p.use_rslora else p.lora_alpha  # kohya scales by alpha / r
    tensors = {}
    for key, value in kohya.items():
        key = TEXT_ENCODER.sub(r"\1text_model_", key)
        if not xl:
            key = key.replace("lora_te1_", "lora_te_")
        tensors[key] = torch.tensor(float(alpha)) if key.endswith(".alpha") else value.contiguous()
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(p.r),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": _base_version(cfg, xl),
        "ss_sd_model_name": cfg.model.name_or_path,
        "ss_resolution": json.dumps([cfg.diffusion.resolution, cfg.diffusion.resolution]),
        "ss_output_name": run_dir.name,
        "ss_training_comment": "ft task=text_to_image, converted by diffusers' convert_state_dict_to_kohya",
    }
    return tensors, metadata


def save(run_dir: Path, cfg, out: Path | None = None) -> Path | None:
    """Write the kohya file (default: <run_dir>/lora_kohya.safetensors); None: the run has no kohya form."""
    from safetensors.torch import save_file

    why = refusal(cfg)
    if why:
        print(f"ft: no {KOHYA_WEIGHTS}: {why.split(': ', 1)[-1]}", flush=True)
        return None
    tensors, metadata = state_dict(run_dir, cfg)
    out = out or run_dir / KOHYA_WEIGHTS
    save_file(tensors, str(out), metadata=metadata)
    return out


def export(run_dir: Path, cfg, out: Path) -> Path:
    """`ft export format=kohya`: the kohya file at `out` (a directory, made here)."""
    why = refusal(cfg)
    if why:
        raise FtError(why)
    if not (run_dir / rundir.LORA_WEIGHTS).is_file():
        raise FtError(f"run_dir={run_dir} holds no {rundir.LORA_WEIGHTS}: is the training finished?")
    out.mkdir(parents=True)
    return save(run_dir, cfg, out / KOHYA_WEIGHTS)


def _base_version(cfg, xl: bool) -> str:
    """kohya's name of the base: SDXL, or SD 1.x / 2.x told apart by the UNet's text width (768 / 1024)."""
    if xl:
        return "sdxl_base_v1-0"
    from ft.tasks.text_to_image import pipeline as diffusion

    config = Path(diffusion.resolve_path(cfg.model.name_or_path)) / "unet" / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(cfg.model.name_or_path, "unet/config.json", revision=cfg.model.revision)
        config = Path(cached) if isinstance(cached, str) else None
    width = json.loads(config.read_text()).get("cross_attention_dim") if config else None
    return "sd_v2" if width == 1024 else "sd_v1"


def _pipeline(cfg) -> str:
    """The base's pipeline class name (its model_index.json), or "" where it is not on disk."""
    from ft.tasks.text_to_image import pipeline as diffusion

    path = diffusion.resolve_path(cfg.model.name_or_path)
    return diffusion.pipeline_class_name(path, cfg.model.revision) or ""


def _is_xl(cfg) -> bool:
    return "XL" in _pipeline(cfg)
