"""A vision-language model and its processor: loading (the tiny-vlm-* models built offline on first use),
which modules LoRA reaches (the language model's linear layers; the vision tower's with
vision.lora_vision_tower; never the projector, which vision.train_projector trains in full instead), and
what QLoRA leaves unquantized (the vision tower, the projector and lm_head, unless
vision.quantize_vision_tower).

The parts are found from the model's structure, not from a table of architectures: transformers' own
lookups give the language model (`get_decoder()`) and the vision tower (`get_encoder(modality="image")`);
the projector is what else the model holding them has (LLaVA's and Gemma 3's multi_modal_projector,
Idefics3's connector), or, where the tower holds it (Qwen2-VL, Qwen2.5-VL), the tower's `merger`.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ft.config.schema import ModelConfig
from ft.errors import FtError
from ft.tasks.vision_language import tiny
from ft.tasks.vision_language.schema import TINY_VLM_MODELS, VisionConfig


def resolve_path(cfg: ModelConfig) -> str:
    """Where from_pretrained loads from; builds a tiny-vlm-* model on first use."""
    if cfg.name_or_path in TINY_VLM_MODELS:
        return str(tiny.ensure(cfg.name_or_path, cfg.tiny))
    path = Path(cfg.name_or_path).expanduser()
    return str(path) if path.is_dir() else cfg.name_or_path


def load_processor(model_cfg: ModelConfig, vision_cfg: VisionConfig):
    """The model's processor (tokenizer, image processor, chat template), with vision.min_pixels /
    max_pixels applied where the image processor has a pixel budget, model.chat_template in place of its
    own, and EOS as the pad token where the tokenizer has none."""
    from transformers import AutoProcessor

    if model_cfg.name_or_path in TINY_VLM_MODELS and (why := tiny.processor_missing(model_cfg.name_or_path)):
        raise FtError(f"model {model_cfg.name_or_path}: {why}")
    try:
        processor = AutoProcessor.from_pretrained(
            resolve_path(model_cfg), revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
        )
    except (AttributeError, ImportError, ValueError) as error:
        # transformers' own message for a processor with a video part and no torchvision is an AttributeError
        # about VIDEO_PROCESSOR_MAPPING
        if "video" in str(error).lower() and importlib.util.find_spec("torchvision") is None:
            raise FtError(
                f"model {model_cfg.name_or_path}: its processor has a video processor, which needs torchvision "
                "(not installed)"
            ) from error
        raise
    if getattr(processor, "image_processor", None) is None:  # AutoProcessor gives a text model its tokenizer
        raise FtError(
            f"model.name_or_path={model_cfg.name_or_path} has no image processor: it is a text-only model, and "
            f"task=vlm trains vision-language models (e.g. tiny-vlm-gemma3, Qwen/Qwen2.5-VL-7B-Instruct); for a "
            f"text model use task=sft"
        )
    set_pixel_budget(processor, vision_cfg.min_pixels, vision_cfg.max_pixels)
    if model_cfg.chat_template:
        processor.chat_template = model_cfg.chat_template
    if processor.tokenizer.pad_token is None:  # many base models ship without one; EOS as pad is the usual fix
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor


def set_pixel_budget(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Qwen2-VL's image processors (and those built like them) resize each image to between min_pixels and
    max_pixels, held in `size` as shortest_edge / longest_edge; others have a fixed size, so a budget for
    them is refused."""
    if min_pixels is None and max_pixels is None:
        return
    images = processor.image_processor
    accepted = getattr(getattr(images, "valid_kwargs", None), "__annotations__", {})
    if "min_pixels" not in accepted or "max_pixels" not in accepted:
        raise FtError(
            f"vision.min_pixels / vision.max_pixels: {type(images).__name__} has no pixel budget (it resizes to a "
            "fixed size); leave them null"
        )
    low = images.size["shortest_edge"] if min_pixels is None else min_pixels
    high = images.size["longest_edge"] if max_pixels is None else max_pixels
    if low > high:
        raise FtError(f"vision.min_pixels ({low}) is more than vision.max_pixels ({high})")
    images.size["shortest_edge"], images.size["longest_edge"] = low, high  # a SizeDict or a dict


def load_model(model_cfg: ModelConfig, dtype, quantization=None):
    """AutoModelForImageTextToText with the configured attention; `quantization`: a BitsAndBytesConfig."""
    from transformers import AutoModelForImageTextToText

    if model_cfg.trust_remote_code:
        print(f"ft: warning: model.trust_remote_code=true runs Python code shipped with {model_cfg.name_or_path}")
    return AutoModelForImageTextToText.from_pretrained(
        resolve_path(model_cfg),
        revision=model_cfg.revision,
        dtype=dtype,
        attn_implementation=model_cfg.attn_implementation,
        trust_remote_code=model_cfg.trust_remote_code,
        quantization_config=quantization,
    )


@dataclass(frozen=True)
class VisionModules:
    """Full module names: the language model, the vision tower and the projector (a tower may hold its
    projector: then a projector's name is under the tower's)."""

    language_model: str
    tower: str
    projector: tuple[str, ...]

    def in_tower(self, name: str) -> bool:
        return _under(name, self.tower) and not any(_under(name, p) for p in self.projector)

    def in_vision(self, name: str) -> bool:
        """In the tower or the projector."""
        return _under(name, self.tower) or any(_under(name, p) for p in self.projector)


def vision_modules(model) -> VisionModules:
    names = {id(module): name for name, module in model.named_modules()}
    decoder, tower = model.get_decoder(), model.get_encoder(modality="image")
    if tower is model or id(tower) not in names or id(decoder) not in names:
        raise FtError(f"{type(model).__name__}: found no vision tower and language model apart in it")
    tower_name, decoder_name = names[id(tower)], names[id(decoder)]
    holder = model.get_submodule(tower_name.rpartition(".")[0])
    projector = [
        f"{names[id(holder)]}.{child}".lstrip(".")
        for child, module in holder.named_children()
        if module not in (tower, decoder) and any(True for _ in module.parameters())
    ]
    projector += [f"{tower_name}.{child}" for child, _ in tower.named_children() if "merger" in child]
    if not projector:
        raise FtError(f"{type(model).__name__}: found no projector beside its vision tower")
    return VisionModules(language_model=decoder_name, tower=tower_name, projector=tuple(projector))


def lora_targets(model, vision_cfg: VisionConfig, wanted="all-linear") -> list[str]:
    """PEFT target_modules as full module names: every linear layer of the language model (what all-linear
    means for a text model; lm_head is outside it), and of the vision tower with vision.lora_vision_tower;
    never the projector's. `wanted`: peft.target_modules, "all-linear" or short names (q_proj, ...) to keep."""
    import torch

    parts = vision_modules(model)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and (_under(name, parts.language_model) or (vision_cfg.lora_vision_tower and parts.in_tower(name)))
        and (wanted == "all-linear" or name.rpartition(".")[2] in wanted)
    ]


def modules_to_save(model, vision_cfg: VisionConfig, given=None) -> list[str] | None:
    """PEFT modules_to_save: `given` (peft.modules_to_save), and the projector, trained in full and saved with
    the adapter, with vision.train_projector."""
    projector = list(vision_modules(model).projector) if vision_cfg.train_projector else []
    return [*(given or []), *projector] or None


def quantization_config(model_cfg: ModelConfig, peft, vision_cfg: VisionConfig, dtype):
    """The BitsAndBytesConfig of a QLoRA run (ft.models.quantization_config) with the vision side skipped as
    `vision_cfg` asks (quantization_skip_modules, from the model's config alone), or None."""
    from transformers import AutoConfig

    from ft import models as text_models

    quantization = text_models.quantization_config(peft, dtype)
    if quantization is not None:
        config = AutoConfig.from_pretrained(resolve_path(model_cfg), revision=model_cfg.revision)
        quantization.llm_int8_skip_modules = quantization_skip_modules(config, vision_cfg)
    return quantization


def quantization_skip_modules(model_or_config, vision_cfg: VisionConfig) -> list[str]:
    """BitsAndBytesConfig(llm_int8_skip_modules=...) for QLoRA: the vision tower and projector stay in the
    compute dtype unless vision.quantize_vision_tower. By default bitsandbytes would quantize them
    (transformers skips only the output embeddings, tied weights and the last parameter), and this list
    replaces that default, so it names lm_head (the output embeddings) itself."""
    model = model_or_config if hasattr(model_or_config, "named_modules") else _skeleton(model_or_config)
    names = {id(module): name for name, module in model.named_modules()}
    skip = [names[id(model.get_output_embeddings())]]
    if not vision_cfg.quantize_vision_tower:
        parts = vision_modules(model)
        skip += [parts.tower, *(p for p in parts.projector if not _under(p, parts.tower))]
    return skip


def _skeleton(config):
    """The model built from its config without allocating its weights."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
