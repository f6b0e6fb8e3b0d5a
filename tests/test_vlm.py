"""task=vlm end to end: image conversations in both shapes become the same rows; TRL's vision collator with
each family's chat template trains exactly the assistant answers (never an image token, padding or a user
turn) and each answer's end-of-turn token; a run trains, saves, and its adapter reloads to the trained
model's logits; `ft generate image=` answers about an image."""

import random

import pytest
import torch

from conftest import write_jsonl
from ft import config
from ft.errors import FtError
from ft.tasks.vision_language import data, masks, models, sft, tiny
from ft.tasks.vision_language.schema import TINY_VLM_MODELS, VisionConfig

WITH_PROCESSOR = [name for name in TINY_VLM_MODELS if not tiny.processor_missing(name)]
QUESTION = "What colour is the shape?"


def _picture(tmp_path, name: str, colour: str) -> str:
    data.draw(colour, "square", random.Random(0)).save(tmp_path / name)
    return name


def _two_shapes(tmp_path):
    """The same two conversations (the second: two images, two user turns) in both shapes."""
    first, second, third = (_picture(tmp_path, f"{c}.png", c) for c in ("red", "blue", "green"))
    messages = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
                {"role": "assistant", "content": "red"},
            ],
            "images": [first],
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
                {"role": "assistant", "content": [{"type": "text", "text": "blue"}]},
                {"role": "user", "content": [{"type": "text", "text": "And here?"}, {"type": "image"}]},
                {"role": "assistant", "content": "green"},
            ],
            "images": [second, third],
        },
    ]
    llava = [
        {
            "image": first,
            "conversations": [{"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": "red"}],
        },
        {
            "images": [second, third],
            "conversations": [
                {"from": "human", "value": f"<image>\n{QUESTION}"},
                {"from": "gpt", "value": "blue"},
                {"from": "human", "value": "And here?\n<image>"},
                {"from": "gpt", "value": "green"},
            ],
        },
    ]  # fmt: skip
    return messages, llava


def _load(source, **settings):
    cfg = config.compose(["task=vlm", "model.name_or_path=tiny-vlm-llava", f"data.source={source}", "data.eval_size=0"])
    for key, value in settings.items():
        setattr(cfg.data, key, value)
    (train, evaluation), shape = data.load(cfg.data)
    return train, shape


def test_both_shapes_become_the_same_rows_with_their_images_opened(tmp_path):
    messages, llava = _two_shapes(tmp_path)
    from_messages, shape_m = _load(write_jsonl(tmp_path / "messages.jsonl", messages))
    from_llava, shape_l = _load(write_jsonl(tmp_path / "llava.jsonl", llava))
    assert (shape_m, shape_l) == ("messages", "llava")
    assert from_messages["messages"] == from_llava["messages"]
    assert [len(images) for images in from_llava["images"]] == [1, 2]
    pixels = [[image.getpixel((20, 20)) for image in images] for images in from_llava["images"]]
    assert pixels == [[image.getpixel((20, 20)) for image in images] for images in from_messages["images"]]
    assert from_llava["messages"][1][2]["content"] == [
        {"type": "text", "text": "And here?"},
        {"type": "image", "text": None},
    ]


def test_embedded_images_in_parquet(tmp_path):
    from datasets import Dataset

    rows = data.shape_rows(6, seed=1)
    Dataset.from_list([{**row, "images": [{"bytes": row["images"][0]["bytes"]}]} for row in rows]).to_parquet(
        tmp_path / "shapes.parquet"
    )
    train, shape = _load(tmp_path / "shapes.parquet")
    assert shape == "messages" and len(train) == 6
    assert train[0]["images"][0].size == (64, 64)


def _collated(name, rows):
    """Each row through TRL's vision collator as task=vlm sets it up (the family's training template)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    cfg = config.compose(["task=vlm", f"model.name_or_path={name}"])
    processor = models.load_processor(cfg.model, VisionConfig())
    sft.training_template(processor, name)
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True, max_length=1024)
    return processor, collator, [collator([dict(row)]) for row in rows]


def _model(name):
    return models.load_model(config.compose(["task=vlm", f"model.name_or_path={name}"]).model, torch.float32)


@pytest.mark.parametrize("name", WITH_PROCESSOR)
def test_only_assistant_answers_and_their_end_of_turn_token_carry_loss(name, tmp_path):
    family = tiny.VLM_FAMILIES[name]
    messages, _ = _two_shapes(tmp_path)
    rows, _ = _load(write_jsonl(tmp_path / "messages.jsonl", messages))
    processor, collator, batches = _collated(name, rows)
    tokenizer = processor.tokenizer
    image_id, end_id = tokenizer.convert_tokens_to_ids([family.image_token, family.end_of_turn])
    for row, batch in zip(rows, batches):
        ids, labels = batch["input_ids"][0], batch["labels"][0]
        trained = labels != -100
        assert (ids == image_id).sum() > 0 and not trained[ids == image_id].any()  # image tokens: never
        assert not trained[batch["attention_mask"][0] == 0].any()  # padding: never
        spans = masks.spans(labels.tolist())
        answers = masks.assistant_texts(row["messages"])
        assert len(spans) == len(answers)
        for (start, end), answer in zip(spans, answers):
            assert tokenizer.decode(ids[start:end], skip_special_tokens=True).strip() == answer
            assert end_id in ids[start:end].tolist(), f"{family.end_of_turn} not trained after {answer!r}"
        untrained = tokenizer.decode(ids[~trained], skip_special_tokens=True)
        assert QUESTION in untrained  # the user's turns are context, never targets
    masks.check(rows, collator, processor, _model(name), split="")  # ft's own check agrees


def test_a_template_whose_markers_cover_the_question_is_refused(tmp_path):
    messages, _ = _two_shapes(tmp_path)
    rows, _ = _load(write_jsonl(tmp_path / "messages.jsonl", messages))
    name = "tiny-vlm-llava"
    processor, collator, _ = _collated(name, rows)
    # the whole conversation inside one generation block: user turns and images would be trained
    processor.chat_template = (
        "{% generation %}"
        + processor.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
        + "{% endgeneration %}"
    )
    model = _model(name)
    with pytest.raises(FtError, match="train row 0 trains on image tokens"):
        masks.check(rows, collator, processor, model, split="")


@pytest.mark.parametrize("recipe, layers", [("qwen2_5_vl_7b_qlora", 28), ("smolvlm_256m_lora", 30)])
def test_real_recipes_put_lora_on_the_language_model_and_keep_the_tower_unquantized(recipe, layers):
    """The recipes' hub models as published (8.29B and 0.26B parameters), built on the meta device: LoRA reaches
    the 7 linear layers of each decoder layer and nothing of the vision side; QLoRA skips the tower."""
    from transformers import AutoModelForImageTextToText

    from ft.models import published

    cfg = config.compose([f"recipe={recipe}"])
    model_config = published.config(cfg.model.name_or_path)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(model_config)
    parts = models.vision_modules(model)
    targets = models.lora_targets(model, cfg.vision, cfg.peft.target_modules)
    assert len(targets) == 7 * layers and not any(parts.in_vision(name) for name in targets)
    skipped = models.quantization_skip_modules(model, cfg.vision)
    assert parts.tower in skipped and "lm_head" in skipped
