"""Rules for task=text_to_image, and the line between diffusion pipelines and language models: a
diffusion pipeline trains only under task=text_to_image, which trains nothing else."""

from pathlib import Path

from ft.config.diffusion_schema import TINY_DIFFUSION_MODELS, UNET_ATTENTION
from ft.config.schema import TINY_MODEL
from ft.errors import FtError
from ft.models import adapters

TASK = "text_to_image"
MODEL_INDEX = "model_index.json"  # a diffusers pipeline directory has it; a transformers model has config.json
OPTIMIZERS = ["adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "adamw_8bit"]  # the loop's optimizers
SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
STRATEGIES = ["single", "ddp"]
PIPELINE_HINT = "use model.name_or_path=tiny-sd / tiny-sdxl, or a Stable Diffusion / SDXL pipeline"


def check_config(cfg) -> None:
    """On the config alone."""
    name = cfg.model.name_or_path
    if cfg.task != TASK:
        if name in TINY_DIFFUSION_MODELS:
            raise FtError(
                f"model.name_or_path={name} is a text-to-image pipeline, not a language model: use "
                f"task=text_to_image (recipe=tiny_sd_lora), or model.name_or_path=tiny for task={cfg.task}"
            )
        return
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        raise FtError("task=text_to_image needs diffusers: pip install -e '.[image]'")
    if name == TINY_MODEL:
        raise FtError(
            f"model.name_or_path=tiny is a language model; task=text_to_image trains a diffusion pipeline: "
            f"{PIPELINE_HINT}"
        )
    p, d, t = cfg.peft, cfg.diffusion, cfg.training
    if p.method != "lora" or adapters.is_quantized(p) or p.loraplus_lr_ratio or p.modules_to_save:
        raise FtError(
            "task=text_to_image trains LoRA on a full-precision UNet: use peft=lora (no quantized base, LoRA+, "
            "modules_to_save or other PEFT methods)"
        )
    if str(p.init_lora_weights).lower().startswith("pissa"):
        raise FtError("task=text_to_image does not support PiSSA: unset peft.init_lora_weights")
    if p.target_modules in (None, "all-linear"):
        raise FtError(
            f"peft.target_modules={p.target_modules} names no UNet layers: for task=text_to_image set "
            f"peft.target_modules=[{','.join(UNET_ATTENTION)}] (the UNet attention)"
        )
    if cfg.optim.name not in OPTIMIZERS:
        raise FtError(f"optim.name={cfg.optim.name}: task=text_to_image trains with {' / '.join(OPTIMIZERS)}")
    if t.lr_scheduler_type not in SCHEDULERS:
        raise FtError(
            f"training.lr_scheduler_type={t.lr_scheduler_type}: task=text_to_image uses diffusers' schedules: "
            f"{', '.join(SCHEDULERS)}"
        )
    if cfg.distributed.strategy not in STRATEGIES:
        raise FtError(f"distributed={cfg.distributed.strategy}: task=text_to_image runs single or ddp")
    if cfg.model.adapter:
        raise FtError("model.adapter is for language-model tasks: task=text_to_image starts a new LoRA")
    if cfg.callbacks.sample_prompts:
        raise FtError("callbacks.sample_prompts is for language models: use diffusion.validation_prompts")
    _check_dreambooth(d)


def _check_dreambooth(d) -> None:
    if d.instance_data_dir and not d.instance_prompt:
        raise FtError('diffusion.instance_data_dir needs diffusion.instance_prompt, e.g. "a photo of sks dog"')
    if d.with_prior_preservation:
        if not d.instance_data_dir:
            raise FtError("diffusion.with_prior_preservation is DreamBooth's: set diffusion.instance_data_dir")
        if not d.class_prompt:
            raise FtError('diffusion.with_prior_preservation needs diffusion.class_prompt, e.g. "a photo of a dog"')
    if d.cache_text_embeddings and d.train_text_encoder:
        raise FtError("diffusion.cache_text_embeddings needs a frozen text encoder: unset diffusion.train_text_encoder")


def model_file(cfg) -> str:
    """The file that shows the model is there: a pipeline's model_index.json, or a model's config.json."""
    return MODEL_INDEX if cfg.task == TASK else "config.json"


def check_model_kind(cfg) -> None:
    """Before anything loads: a local or cached model of the wrong kind for the task."""
    name = cfg.model.name_or_path
    if name == TINY_MODEL or name in TINY_DIFFUSION_MODELS:
        return
    files = _files(name, cfg.model.revision)
    if files is None:
        return  # not here yet: ft.rules.inputs says how to get it
    if cfg.task == TASK and MODEL_INDEX not in files:
        raise FtError(
            f"model.name_or_path={name} is not a diffusers pipeline (no {MODEL_INDEX}): task=text_to_image "
            f"trains one; {PIPELINE_HINT}"
        )
    if cfg.task != TASK and MODEL_INDEX in files and "config.json" not in files:
        raise FtError(
            f"model.name_or_path={name} is a diffusers pipeline, not a language model: use task=text_to_image, "
            f"or a language model for task={cfg.task}"
        )


def _files(name: str, revision) -> dict | None:
    """{file name: text} of model_index.json / config.json in a local dir or the hub cache; None: neither."""
    found = {}
    for file in (MODEL_INDEX, "config.json"):
        path = Path(name).expanduser() / file
        if not Path(name).expanduser().is_dir():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, file, revision=revision)
            path = Path(cached) if isinstance(cached, str) else None
        if path is not None and path.is_file():
            found[file] = path.read_text()
    return found or (None if not Path(name).expanduser().is_dir() else found)


def check_images(cfg) -> None:
    """Before anything loads: an image folder's rows name existing, captioned images (ft.data.images;
    whether each one decodes is checked when they are read)."""
    from ft.data import images

    d, source = cfg.diffusion, Path(cfg.data.source).expanduser()
    if cfg.task != TASK:
        return
    if d.instance_data_dir and d.instance_data_dir != "synthetic":
        folder = Path(d.instance_data_dir).expanduser()
        if (folder / images.METADATA).is_file():  # captioned DreamBooth images
            images.captions(folder, d.caption_column)
    elif not d.instance_data_dir and cfg.data.source != "synthetic" and source.is_dir():
        images.captions(source, d.caption_column)
