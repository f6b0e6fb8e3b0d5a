"""Rules of task=text_to_image (its Task's check_config and check_inputs): LoRA on a full-precision
UNet (or a Flux / SD3 transformer, 4-bit on a GPU) with the loop's optimizers and schedules, the options of
each objective (noise prediction or flow matching), DreamBooth's settings, and captioned images."""

from pathlib import Path

from ft.config.schema import TINY_MODEL
from ft.errors import FtError
from ft.models import adapters
from ft.run.distributed import fsdp_launched
from ft.tasks.text_to_image.schema import UNET_ATTENTION

OPTIMIZERS = ["adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "adamw_8bit"]  # the loop's optimizers
SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
STRATEGIES = ["single", "ddp"]
PIPELINE_HINT = (
    "use model.name_or_path=tiny-sd / tiny-sdxl / tiny-flux / tiny-sd3, or a Stable Diffusion / SDXL / Flux.1 / "
    "SD3 pipeline"
)
FLOW_KEYS = ("weighting_scheme", "logit_mean", "logit_std", "mode_scale", "flux_guidance", "max_sequence_length")


def check_config(cfg) -> None:
    """On the config alone."""
    name = cfg.model.name_or_path
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        raise FtError("task=text_to_image needs diffusers: pip install -e '.[image]'")
    if name == TINY_MODEL:
        raise FtError(
            f"model.name_or_path=tiny is a language model; task=text_to_image trains a diffusion pipeline: "
            f"{PIPELINE_HINT}"
        )
    from ft.tasks.text_to_image import flow

    p, d, t = cfg.peft, cfg.diffusion, cfg.training
    family = flow.family(name, cfg.model.revision)
    four_bit_transformer = family and p.load_in_4bit and not p.load_in_8bit  # diffusers' Flux QLoRA recipe
    if p.method != "lora" or (adapters.is_quantized(p) and not four_bit_transformer):
        raise FtError(
            "task=text_to_image trains LoRA on a full-precision UNet: use peft=lora (no quantized base, LoRA+, "
            "modules_to_save or other PEFT methods; a 4-bit base only for a Flux / SD3 transformer, on a GPU)"
        )
    if p.loraplus_lr_ratio or p.modules_to_save:
        raise FtError("task=text_to_image trains plain LoRA: unset peft.loraplus_lr_ratio and peft.modules_to_save")
    if str(p.init_lora_weights).lower().startswith("pissa"):
        raise FtError("task=text_to_image does not support PiSSA: unset peft.init_lora_weights")
    if p.target_modules in (None, "all-linear"):
        what, layers = ("transformer", flow.TRANSFORMER_ATTENTION) if family else ("UNet", UNET_ATTENTION)
        raise FtError(
            f"peft.target_modules={p.target_modules} names no {what} layers: for task=text_to_image set "
            f"peft.target_modules=[{','.join(layers)}] (the {what} attention)"
        )
    _check_objective(cfg, family)
    if cfg.optim.name not in OPTIMIZERS:
        raise FtError(f"optim.name={cfg.optim.name}: task=text_to_image trains with {' / '.join(OPTIMIZERS)}")
    if t.lr_scheduler_type not in SCHEDULERS:
        raise FtError(
            f"training.lr_scheduler_type={t.lr_scheduler_type}: task=text_to_image uses diffusers' schedules: "
            f"{', '.join(SCHEDULERS)}"
        )
    if cfg.distributed.strategy not in STRATEGIES:
        raise FtError(f"distributed={cfg.distributed.strategy}: task=text_to_image runs single or ddp")
    if fsdp_launched():  # an accelerate FSDP config of the user's own: the loop would train, then fail to save
        raise FtError(
            "task=text_to_image under FSDP (accelerate launched it): its loop saves and renders samples on rank 0 "
            "alone, which sharded weights cannot do: launch with distributed=ddp, or without an FSDP config"
        )
    if cfg.model.adapter:
        raise FtError("model.adapter is for language-model tasks: task=text_to_image starts a new LoRA")
    if cfg.callbacks.sample_prompts:
        raise FtError("callbacks.sample_prompts is for language models: use diffusion.validation_prompts")
    _check_dreambooth(d)


def _check_objective(cfg, family: str | None) -> None:
    """Noise-prediction options for Stable Diffusion / SDXL, flow-matching ones for Flux / SD3."""
    from ft.tasks.text_to_image import flow
    from ft.tasks.text_to_image.schema import DiffusionConfig

    d, name = cfg.diffusion, cfg.model.name_or_path
    if family:
        for key in ("prediction_type", "snr_gamma"):
            if getattr(d, key) is not None:
                raise FtError(
                    f"diffusion.{key}={getattr(d, key)}: {name} is trained with flow matching (it predicts the flow "
                    f"from image to noise): unset diffusion.{key}; diffusion.weighting_scheme weights the loss"
                )
        if d.flux_guidance is not None and flow.has_guidance_embeds(name, cfg.model.revision) is False:
            raise FtError(
                f"diffusion.flux_guidance={d.flux_guidance}: {name} has no guidance embedding (only guidance-distilled "
                "Flux, FLUX.1-dev, takes one): unset diffusion.flux_guidance"
            )
        return
    defaults = DiffusionConfig()
    changed = [key for key in FLOW_KEYS if getattr(d, key) != getattr(defaults, key)]
    if changed:
        raise FtError(
            f"diffusion.{changed[0]} is an option of flow-matching models (Flux.1, SD3) and {name} is not one: "
            f"unset it, or train a Flux / SD3 pipeline"
        )


def _check_dreambooth(d) -> None:
    if d.instance_data_dir and not d.instance_prompt:
        raise FtError('diffusion.instance_data_dir needs diffusion.instance_prompt, e.g. "a photo of sks dog"')
    if d.with_prior_preservation:
        if not d.instance_data_dir:
            raise FtError("diffusion.with_prior_preservation is DreamBooth's: set diffusion.instance_data_dir")
        if not d.class_prompt:
            raise FtError('diffusion.with_prior_preservation needs diffusion.class_prompt, e.g. "a photo of a dog"')
    if d.min_bucket_size and d.max_bucket_size and d.min_bucket_size > d.max_bucket_size:
        raise FtError(
            f"diffusion.min_bucket_size={d.min_bucket_size} is above diffusion.max_bucket_size={d.max_bucket_size}"
        )
    if d.cache_text_embeddings and d.train_text_encoder:
        raise FtError("diffusion.cache_text_embeddings needs a frozen text encoder: unset diffusion.train_text_encoder")


def check_images(cfg) -> None:
    """Before anything loads: an image folder's rows name existing, captioned images (ft.tasks.text_to_image.images;
    whether each one decodes is checked when they are read)."""
    from ft.tasks.text_to_image import images

    d, source = cfg.diffusion, Path(cfg.data.source).expanduser()
    if d.instance_data_dir and d.instance_data_dir != "synthetic":
        folder = Path(d.instance_data_dir).expanduser()
        images.listing(folder, d.caption_column, d.instance_prompt, "diffusion.instance_data_dir")
    elif not d.instance_data_dir and cfg.data.source != "synthetic" and source.is_dir():
        images.listing(source, d.caption_column, d.default_caption)
