"""task=vlm's models: the offline tiny vision-language models of four real families, their processors and
chat templates, where LoRA lands, and what QLoRA leaves unquantized. Real objects throughout: each tiny
model is built once into the test cache (FT_CACHE) and loaded like any local checkpoint."""

import importlib.util
import time
import types

import bitsandbytes as bnb
import pytest
import torch
from PIL import Image

from ft import models as ft_models
from ft.config.schema import ModelConfig, PeftConfig, TinyModelConfig
from ft.errors import FtError
from ft.tasks.vision_language import models, tiny
from ft.tasks.vision_language.schema import TINY_VLM_MODELS, VisionConfig

SHAPE = TinyModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=512)
TORCHVISION = importlib.util.find_spec("torchvision") is not None
# Without torchvision, transformers cannot make Qwen2.5-VL's processor (tiny.processor_missing)
WITH_PROCESSOR = [name for name in TINY_VLM_MODELS if not tiny.processor_missing(name)]


def model_cfg(name: str, **settings) -> ModelConfig:
    return ModelConfig(name_or_path=name, tiny=SHAPE, **settings)


@pytest.fixture(scope="module", autouse=True)
def built():
    return {name: tiny.ensure(name, SHAPE) for name in TINY_VLM_MODELS}


def conversations(colours=("red", "blue")) -> list:
    sizes = [(40, 30), (24, 48)]  # not the processors' own size: they resize
    return [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": Image.new("RGB", size, colour)},
                    {"type": "text", "text": "What colour?"},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": colour}]},
        ]
        for colour, size in zip(colours, sizes)
    ]


def batch(processor) -> dict:
    return processor.apply_chat_template(
        conversations(), tokenize=True, return_dict=True, return_tensors="pt", processor_kwargs={"padding": True}
    )


@pytest.mark.parametrize("name", TINY_VLM_MODELS)
def test_tiny_model_carries_the_family_tokens_and_real_template(name, built):
    from transformers import AutoConfig, AutoTokenizer
    from trl import chat_template_utils

    family = tiny.VLM_FAMILIES[name]
    tokenizer = AutoTokenizer.from_pretrained(built[name])
    config = AutoConfig.from_pretrained(built[name])
    for token in family.special_tokens():
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id, token
        assert tokenizer.tokenize(token) == [token]
    image_id = getattr(config, "image_token_id", None) or config.image_token_index
    assert image_id == tokenizer.convert_tokens_to_ids(family.image_token)
    assert (tokenizer.eos_token, tokenizer.pad_token) == (family.eos, family.pad)
    assert tokenizer.chat_template == getattr(chat_template_utils, f"{family.template}_chat_template")
    # TRL swaps in its training variant ({% generation %} markers) for each
    training = getattr(chat_template_utils, f"{family.template}_training_chat_template")
    assert chat_template_utils.get_training_chat_template(tokenizer) == training


@pytest.mark.parametrize("name", WITH_PROCESSOR)
def test_processor_renders_a_conversation_and_the_model_forwards_a_batch(name):
    processor = models.load_processor(model_cfg(name), VisionConfig())
    family = tiny.VLM_FAMILIES[name]
    rendered = processor.apply_chat_template(conversations()[0], tokenize=False)
    assert family.end_of_turn in rendered and "red" in rendered
    inputs = batch(processor)
    assert inputs["input_ids"].shape[0] == 2
    assert (inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids(family.image_token)).sum() > 0
    model = models.load_model(model_cfg(name), torch.float32)
    start = time.perf_counter()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    assert time.perf_counter() - start < 2


@pytest.mark.skipif(TORCHVISION, reason="torchvision is installed: the processor loads")
def test_qwen_without_torchvision_is_one_line_and_its_model_still_forwards(built):
    from transformers import AutoImageProcessor, AutoTokenizer

    name = "tiny-vlm-qwen2_5_vl"
    with pytest.raises(FtError, match="torchvision") as refused:
        models.load_processor(model_cfg(name), VisionConfig())
    assert "\n" not in str(refused.value)
    tokenizer, images = AutoTokenizer.from_pretrained(built[name]), AutoImageProcessor.from_pretrained(built[name])
    pictures = images([turns[0]["content"][0]["image"] for turns in conversations()], return_tensors="pt")
    # what the processor would do: one <|image_pad|> per merged 2x2 patch
    texts = [
        tokenizer.apply_chat_template(turns, tokenize=False).replace(
            "<|image_pad|>", "<|image_pad|>" * (int(grid.prod()) // 4)
        )
        for turns, grid in zip(conversations(), pictures["image_grid_thw"])
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    model = models.load_model(model_cfg(name), torch.float32)
    assert torch.isfinite(model(**inputs, **pictures, labels=inputs["input_ids"]).loss)


@pytest.mark.skipif(TORCHVISION, reason="torchvision is installed: the recipe trains")
def test_qwen_recipe_is_refused_before_the_run_without_torchvision(tmp_path):
    from conftest import assert_refused, run_ft

    result = run_ft("train", "recipe=tiny_vlm_qwen2_5_vl", f"training.output_dir={tmp_path}")
    assert_refused(result.returncode, result.stderr, "tiny-vlm-qwen2_5_vl", "torchvision", alone=False)
    assert not any(tmp_path.iterdir())  # refused before the run directory


def test_pixel_budget_where_the_image_processor_has_one(built):
    from transformers import AutoImageProcessor

    processor = types.SimpleNamespace(image_processor=AutoImageProcessor.from_pretrained(built["tiny-vlm-qwen2_5_vl"]))
    image = Image.new("RGB", (64, 64))
    # patches of 4x4 pixels: 32x32, the tiny model's max, is 8x8 of them
    assert processor.image_processor(image)["image_grid_thw"].prod() == 8 * 8
    models.set_pixel_budget(processor, min_pixels=16 * 16, max_pixels=16 * 16)
    assert processor.image_processor(image)["image_grid_thw"].prod() == 4 * 4
    with pytest.raises(FtError, match="more than vision.max_pixels"):
        models.set_pixel_budget(processor, min_pixels=64 * 64, max_pixels=None)
    with pytest.raises(FtError, match="Gemma3ImageProcessor.* has no pixel budget"):
        models.load_processor(model_cfg("tiny-vlm-gemma3"), VisionConfig(max_pixels=1024))


def test_chat_template_override():
    processor = models.load_processor(model_cfg("tiny-vlm-llava", chat_template="{{ 'x' }}"), VisionConfig())
    assert processor.chat_template == "{{ 'x' }}"


def linear_names(model, under) -> set:
    """The linear layers under a module name, or where a predicate holds."""
    if isinstance(under, str):
        prefix = under
        under = lambda n: models._under(n, prefix)  # noqa: E731
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and under(n)}


@pytest.mark.parametrize("name", TINY_VLM_MODELS)
def test_lora_lands_in_the_language_model_and_the_tower_only_when_asked(name):
    from peft import LoraConfig, get_peft_model

    model = models.load_model(model_cfg(name), torch.float32)
    parts = models.vision_modules(model)
    language, tower = linear_names(model, parts.language_model), linear_names(model, parts.in_tower)
    assert language and tower and not language & tower
    assert set(models.lora_targets(model, VisionConfig())) == language
    assert set(models.lora_targets(model, VisionConfig(lora_vision_tower=True))) == language | tower

    vision = VisionConfig(lora_vision_tower=True, train_projector=True)
    lora = LoraConfig(
        r=4, target_modules=models.lora_targets(model, vision), modules_to_save=models.modules_to_save(model, vision)
    )
    peft_model = get_peft_model(model, lora)
    with_lora = {
        n.removeprefix("base_model.model.").split(".lora_A")[0]
        for n, _ in peft_model.named_parameters()
        if ".lora_A." in n
    }
    assert with_lora == language | tower  # not lm_head, not the projector
    trained_in_full = {n for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trained_in_full and all(any(f"{p}.modules_to_save." in n for p in parts.projector) for n in trained_in_full)
    assert models.modules_to_save(model, VisionConfig()) is None


@pytest.mark.parametrize("name", TINY_VLM_MODELS)
def test_qlora_leaves_the_tower_and_projector_in_the_compute_dtype(name, built):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(built[name])
    for quantize_tower in (False, True):
        vision = VisionConfig(quantize_vision_tower=quantize_tower)
        quantization = ft_models.quantization_config(PeftConfig(load_in_4bit=True), torch.bfloat16)
        quantization.llm_int8_skip_modules = models.quantization_skip_modules(config, vision)
        model = models.load_model(model_cfg(name), torch.bfloat16, quantization)
        ft_models.disable_4bit_cpu_repack(model)
        assert quantization.llm_int8_skip_modules == models.quantization_skip_modules(model, vision)
        parts = models.vision_modules(model)
        four_bit = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
        language, vision_linears = linear_names(model, parts.language_model), linear_names(model, parts.in_vision)
        assert four_bit == language | (vision_linears if quantize_tower else set()), quantize_tower
        vision_parameters = [p for n, p in model.named_parameters() if parts.in_vision(n)]
        if not quantize_tower:
            assert {p.dtype for p in vision_parameters} == {torch.bfloat16}
        assert model.get_output_embeddings().weight.dtype == torch.bfloat16
        if name in WITH_PROCESSOR:  # the bf16 tower feeds the 4-bit language model
            inputs = batch(models.load_processor(model_cfg(name), VisionConfig()))
            assert torch.isfinite(model(**inputs, labels=inputs["input_ids"]).loss)
