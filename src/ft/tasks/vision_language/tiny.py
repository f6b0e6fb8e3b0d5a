"""The offline tiny vision-language models (model.name_or_path=tiny-vlm-<family>): a real family's
architecture built from its transformers config with random weights (the language model in the shape of
`model.tiny`, a fixed small vision tower), a BPE tokenizer trained locally with the family's special and
image tokens, TRL's copy of the family's real chat template and the family's image processor, set small
so that an image is a few patches. Built once per shape into a cache directory, as ft.models.tiny, then
loaded like any local model with AutoProcessor and AutoModelForImageTextToText.

What differs from the real checkpoints: the sizes, the vocabulary (trained on ft's synthetic corpus) and,
for LLaVA, the checkpoint the template comes from (TRL ships LLaVA-NeXT's Mistral-style template, put on a
LLaVA 1.5 architecture: CLIP tower, two-layer projector, Llama). SmolVLM is the first SmolVLM's
architecture, Idefics3 (SmolVLM2's processor needs num2words, which ft does not install).
"""

import dataclasses
import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ft.config.schema import TinyModelConfig
from ft.models import families, tiny
from ft.tasks.vision_language.schema import TINY_VLM_MODELS

BUILD_VERSION = 1  # bump when what a build writes changes, to rebuild caches

# The vision tower of every tiny model: 32x32 images in patches of 8 (4 for Qwen, whose merger joins 2x2).
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
IMAGE_SIZE, PATCH_SIZE = 32, 8


@dataclass(frozen=True)
class VisionFamily:
    template: str  # trl.chat_template_utils.<template>_chat_template
    bos: str | None
    eos: str
    pad: str | None  # None: the real tokenizer has none (ft pads with EOS)
    end_of_turn: str  # the token that closes an assistant turn
    image_token: str  # the token the processor repeats once per image feature
    specials: tuple = ()  # more special tokens the template or processor writes
    named: dict = dataclasses.field(default_factory=dict)  # tokenizer attributes the processor reads

    def chat_template(self) -> str:
        from trl import chat_template_utils

        return getattr(chat_template_utils, f"{self.template}_chat_template")

    def special_tokens(self) -> list[str]:
        tokens = [self.pad, self.bos, self.eos, self.end_of_turn, self.image_token, *self.specials]
        return list(dict.fromkeys(t for t in tokens if t))


VLM_FAMILIES = {
    "tiny-vlm-qwen2_5_vl": VisionFamily(
        "qwen2_5_vl", bos=None, eos="<|im_end|>", pad="<|endoftext|>", end_of_turn="<|im_end|>",
        image_token="<|image_pad|>",
        specials=("<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"),
    ),
    "tiny-vlm-gemma3": VisionFamily(
        "gemma3", bos="<bos>", eos="<eos>", pad="<pad>", end_of_turn="<end_of_turn>", image_token="<image_soft_token>",
        specials=("<start_of_turn>", "<start_of_image>", "<end_of_image>"),
        named=dict(boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>"),
    ),
    "tiny-vlm-llava": VisionFamily(
        "llava_next", bos="<s>", eos="</s>", pad="<pad>", end_of_turn="</s>", image_token="<image>",
        specials=("<unk>",), named=dict(image_token="<image>"),
    ),
    "tiny-vlm-smolvlm": VisionFamily(
        "smolvlm", bos="<|im_start|>", eos="<end_of_utterance>", pad="<|im_end|>", end_of_turn="<end_of_utterance>",
        image_token="<image>",
        specials=(
            "<fake_token_around_image>", "<global-img>",
            *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
        ),
    ),
}  # fmt: skip
assert sorted(VLM_FAMILIES) == sorted(TINY_VLM_MODELS)


def path_for(name: str, shape: TinyModelConfig) -> Path:
    family = dataclasses.asdict(VLM_FAMILIES[name])
    settings = dict(
        v=BUILD_VERSION, shape=dataclasses.asdict(shape), family=family, processor=not processor_missing(name)
    )
    key = json.dumps(settings, sort_keys=True)
    return tiny.cache_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure(name: str, shape: TinyModelConfig) -> Path:
    """The tiny model's directory, built on first use. Concurrent builders race safely (rename)."""
    return tiny.build_once(path_for(name, shape), lambda out: _build(name, shape, out))


def _build(name: str, shape: TinyModelConfig, out: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, PreTrainedTokenizerFast

    family = VLM_FAMILIES[name]
    specials = family.special_tokens()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tiny.train_bpe(shape.vocab_size, specials),
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        extra_special_tokens=family.named or [t for t in specials if t not in (family.bos, family.eos, family.pad)],
    )
    tokenizer.model_max_length = shape.max_position_embeddings
    config, images, make_processor = _PARTS[name](shape, tokenizer)
    torch.manual_seed(shape.seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    stop = list(dict.fromkeys(tokenizer.convert_tokens_to_ids([family.eos, family.end_of_turn])))
    model.generation_config.eos_token_id = stop if len(stop) > 1 else stop[0]
    model.save_pretrained(out)
    if processor_missing(name):  # the model, tokenizer and image processor alone
        tokenizer.chat_template = family.chat_template()
        tokenizer.save_pretrained(out)
        images.save_pretrained(out)
    else:
        make_processor(images, tokenizer, family.chat_template()).save_pretrained(out)


def processor_missing(name: str) -> str | None:
    """Why transformers cannot make this model's processor here, or None. Qwen2.5-VL's processor has a video
    processor, a torchvision-only class, and without torchvision transformers fails to make the processor
    at all (even with no video processor passed: it checks every part's class)."""
    if name == "tiny-vlm-qwen2_5_vl" and importlib.util.find_spec("torchvision") is None:
        return "transformers' Qwen2.5-VL processor needs torchvision (for its video processor), which is not installed"
    return None


def _with_template(processor_class, images, tokenizer, template, **settings):
    return processor_class(images, tokenizer, chat_template=template, **settings)


def _text(shape, tokenizer, **settings) -> dict:
    return families.shape_settings(shape, tokenizer) | settings


def _vision(**settings) -> dict:
    return VISION | dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE) | settings


def _qwen2_5_vl(shape, tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2VLImageProcessorPil

    ids = tokenizer.convert_tokens_to_ids
    half = shape.hidden_size // shape.num_attention_heads // 2  # multimodal RoPE: temporal, height, width sections
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    vision = dict(
        depth=VISION["num_hidden_layers"], hidden_size=VISION["hidden_size"], num_heads=VISION["num_attention_heads"],
        intermediate_size=VISION["intermediate_size"], patch_size=4, spatial_merge_size=2, temporal_patch_size=2,
        window_size=16, fullatt_block_indexes=[1], out_hidden_size=shape.hidden_size,
    )  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=_text(shape, tokenizer, rope_parameters=dict(rope_type="default", mrope_section=mrope)),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    # 8x8 pixels per merged token: a 32x32 image is 16 tokens
    images = Qwen2VLImageProcessorPil(
        patch_size=4, merge_size=2, temporal_patch_size=2, size=dict(shortest_edge=16 * 16, longest_edge=32 * 32)
    )
    return config, images, _qwen2_5_vl_processor


def _qwen2_5_vl_processor(images, tokenizer, template):
    """Qwen2.5-VL's processor has a video part (transformers refuses to make it without one): a video processor
    with the image processor's patches and pixel budget. It is a torchvision class (processor_missing)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    video = Qwen2VLVideoProcessor(
        patch_size=images.patch_size, merge_size=images.merge_size, temporal_patch_size=images.temporal_patch_size,
        size=dict(images.size),
    )  # fmt: skip
    return Qwen2_5_VLProcessor(images, tokenizer, video, chat_template=template)


def _gemma3(shape, tokenizer):
    from transformers import Gemma3Config, Gemma3ImageProcessorPil, Gemma3Processor

    ids = tokenizer.convert_tokens_to_ids
    text = _text(shape, tokenizer, sliding_window=64, layer_types=None)
    text["query_pre_attn_scalar"] = text["head_dim"]
    tokens = 4  # per image: 4x4 patches pooled 2x2
    config = Gemma3Config(
        text_config=text,
        vision_config=_vision(model_type="siglip_vision_model", vision_use_head=False),  # as Gemma 3
        mm_tokens_per_image=tokens,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        tie_word_embeddings=False,
    )
    images = Gemma3ImageProcessorPil(size=dict(height=IMAGE_SIZE, width=IMAGE_SIZE))
    return config, images, functools.partial(_with_template, Gemma3Processor, image_seq_length=tokens)


def _llava(shape, tokenizer):
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaProcessor

    config = LlavaConfig(
        text_config=dict(_text(shape, tokenizer), model_type="llama"),
        vision_config=_vision(model_type="clip_vision_model"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",  # drops CLS: one token per patch
        tie_word_embeddings=False,
    )
    images = CLIPImageProcessorPil(
        size=dict(shortest_edge=IMAGE_SIZE), crop_size=dict(height=IMAGE_SIZE, width=IMAGE_SIZE)
    )
    processor = functools.partial(
        _with_template, LlavaProcessor, patch_size=PATCH_SIZE, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLS, which "default" then drops
    )  # fmt: skip
    return config, images, processor


def _smolvlm(shape, tokenizer):
    from transformers import Idefics3Config, Idefics3ImageProcessorPil, Idefics3Processor

    config = Idefics3Config(
        text_config=dict(_text(shape, tokenizer), model_type="llama"),
        vision_config=_vision(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        tie_word_embeddings=False,
    )
    images = Idefics3ImageProcessorPil(
        size=dict(longest_edge=IMAGE_SIZE), max_image_size=dict(longest_edge=IMAGE_SIZE), do_image_splitting=False
    )
    seq = (IMAGE_SIZE // PATCH_SIZE) ** 2 // 4  # the connector joins 2x2 patches (scale_factor 2)
    return config, images, functools.partial(_with_template, Idefics3Processor, image_seq_len=seq)


_PARTS = {
    "tiny-vlm-qwen2_5_vl": _qwen2_5_vl,
    "tiny-vlm-gemma3": _gemma3,
    "tiny-vlm-llava": _llava,
    "tiny-vlm-smolvlm": _smolvlm,
}
