"""Real model families (`model.tiny.family`): their chat templates give the right assistant masks.

Each family's tiny model is built from its transformers config with the family's real chat template;
a real SFTTrainer prepares a multi-turn conversation with a system turn, and the tokens it trains on
must be exactly the assistant turns: from the end of the assistant header written in the family's
own spelling (an oracle independent of how ft finds the spans) through the end-of-turn token.
"""

import re

import pytest

from conftest import assert_refused, write_jsonl
from ft import cli, config
from ft.config.names import TINY_FAMILIES
from ft.data import templates
from ft.models import families
from ft.training import launch

SHAPE = [
    "model.tiny.hidden_size=64",
    "model.tiny.intermediate_size=128",
    "model.tiny.num_hidden_layers=2",
    "model.tiny.vocab_size=512",
]
BASE = [
    *SHAPE,
    "data.eval_size=0",
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.save_strategy=no",
    "logging=none",
    "training.max_steps=1",
    "peft.lora_dropout=0",  # PEFT has no dropout on the fused MoE experts all-linear targets
]
# Where each family's assistant turn starts, in its own template's spelling
HEADERS = {
    "llama": "<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": " [/INST]",
    "qwen2_5": "<|im_start|>assistant\n",
    "qwen3": "<|im_start|>assistant\n",
    "gemma3": "<start_of_turn>model\n",
    "phi3": "<|assistant|>\n",
    "qwen3_moe": "<|im_start|>assistant\n",
    "mixtral": " [/INST]",
}
SYSTEM = {"role": "system", "content": "You answer in one word."}
TURNS = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "four"},
    {"role": "user", "content": "Reverse the letters: abc"},
    {"role": "assistant", "content": "cba"},
]


def test_every_family_is_in_the_table():
    assert set(TINY_FAMILIES) == {"llama", *families.FAMILIES} and set(HEADERS) == set(TINY_FAMILIES)


def conversation(family: str) -> list[dict]:
    allows_system = family == "llama" or families.FAMILIES[family].system_turn
    return [SYSTEM, *TURNS] if allows_system else TURNS


def _expected_mask(tokenizer, messages, family) -> tuple[list[int], list[int]]:
    end_of_turn = tokenizer.eos_token if family == "llama" else families.FAMILIES[family].end_of_turn
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, at = [], 0
    while (start := text.find(HEADERS[family], at)) >= 0:
        start += len(HEADERS[family])
        at = text.index(end_of_turn, start) + len(end_of_turn)
        spans.append((start, at))
    assert len(spans) == 2, text
    if family == "phi3":  # Phi-3 ends a conversation with EOS after the last <|end|>: TRL's variant trains it
        assert text.endswith(tokenizer.eos_token)
        spans[-1] = (spans[-1][0], len(text))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(s <= b < e for s, e in spans)) for b, _ in encoded["offset_mapping"]]
    return encoded["input_ids"], mask


def families_special(family: str) -> set:
    return set() if family == "llama" else set(families.special_tokens(families.FAMILIES[family]))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_assistant_mask_is_the_assistant_turns_through_end_of_turn(family, tmp_path):
    from ft.tasks import sft

    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": conversation(family)}] * 4)
    cfg = config.compose([*BASE, f"model.tiny.family={family}", f"data.source={data}"])
    trainer = sft.build_trainer(cfg, tmp_path)
    tokenizer = trainer.processing_class
    row = trainer.train_dataset[0]
    ids, expected = _expected_mask(tokenizer, conversation(family), family)
    assert row["input_ids"] == ids
    trained = [int(label != -100) for label in row["labels"]]
    # TRL's Qwen2.5 variant also trains the newline before the content and the one after <|im_end|>
    # (the prompt at inference already ends with the first; generation stops before the second)
    blank = [
        tokenizer.decode([i]).strip() == "" and tokenizer.convert_ids_to_tokens(i) not in families_special(family)
        for i in ids
    ]
    assert [t for t, b in zip(trained, blank) if not b] == [e for e, b in zip(expected, blank) if not b], (
        tokenizer.convert_ids_to_tokens([i for i, t in zip(ids, trained) if t])
    )
    end_of_turn = tokenizer.convert_tokens_to_ids(
        tokenizer.eos_token if family == "llama" else families.FAMILIES[family].end_of_turn
    )
    assert [i for i, t in zip(ids, trained) if t].count(end_of_turn) == 2  # each assistant turn learns to stop

    # padded in a batch with a shorter row: the end-of-turn tokens stay trained even where pad == EOS
    short = trainer.train_dataset.map(lambda r: {k: r[k][:-3] for k in ("input_ids", "labels")})[0]
    batch = trainer.data_collator([row, short])
    labels = batch["labels"][0].tolist()
    assert labels[: len(ids)] == [i if t else -100 for i, t in zip(ids, trained)]
    assert batch["labels"][1].tolist()[len(ids) - 3 :] == [-100] * 3


def test_method_per_family(tmp_path):
    """Which way each family's masks come: recorded for the README's table (tests/test_family_matrix.py)."""
    from ft.models import load_tokenizer

    methods = {}
    for family in TINY_FAMILIES:
        cfg = config.compose([*SHAPE, f"model.tiny.family={family}"])
        methods[family] = templates.choose(load_tokenizer(cfg.model), family)
    assert methods == {
        "llama": templates.MARKERS,
        "mistral": templates.PREFIX,
        "mixtral": templates.PREFIX,
        **{f: templates.TRL_VARIANT for f in ("llama3", "qwen2_5", "qwen3", "gemma3", "phi3", "qwen3_moe")},
    }


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_moe_family_trains_with_the_default_recipe_and_answers_its_prompts(family, tmp_path):
    """The default recipe has no LoRA dropout, so a MoE family needs no extra option; after training, TRL has
    switched router logits on for its load-balancing loss, and the exact-match report still generates."""

    cfg = config.compose(
        [*SHAPE, f"model.tiny.family={family}", "logging=none", f"training.output_dir={tmp_path}"]
        + ["training.max_steps=2", "training.eval_steps=2", "training.save_strategy=no"]
        + ["data.synthetic.num_examples=100"]
    )
    result = launch.train(cfg)
    assert 0 <= result.metrics["exact_match"] <= 1


def test_system_turn_the_template_rejects_is_one_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": TURNS}] * 3 + [{"messages": [SYSTEM, *TURNS]}])
    overrides = [*BASE, "model.tiny.family=mistral", f"data.source={data}", f"training.output_dir={tmp_path / 'r'}"]
    assert_refused(
        cli.main(["train", *overrides]),
        capsys.readouterr().err,
        "train row 3: the chat template rejects this conversation (Conversation roles must alternate",
        "drop the system turn",
        alone=False,
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "labels, message",
    [
        (
            [[-100, -100, 5, 6], [-100, -100, -100, -100], [-100, 7, -100, 8]],
            "1 of 3 training examples train on no token",
        ),
        ([[-100, 5], [1, 2, 3], [4, 5, 6]], "2 of 3 training examples train on every token"),
        ([[-100, 5], [-100, 2, 3], [4, -100]], None),
    ],
)
def test_trained_share_per_example_is_checked(labels, message):
    """The last guard, on the labels TRL built: an example trained on 0% or 100% of its tokens stops the run."""
    from datasets import Dataset

    from ft.errors import FtError
    from ft.rules import trainer

    prepared = Dataset.from_dict({"input_ids": labels, "labels": labels})
    if message is None:
        trainer.trained_share(prepared, packing=False)
    else:
        with pytest.raises(FtError, match=message):
            trainer.trained_share(prepared, packing=False)


@pytest.mark.parametrize("family", ["mistral", "qwen2_5"])
def test_data_preview_marks_what_training_trains(family, tmp_path, capsys):
    """`ft data preview` shows the same trained share per example as the labels the trainer builds."""
    from ft.tasks import sft

    rows = [{"messages": conversation(family)}, {"messages": TURNS[:2]}, {"messages": [*TURNS, *TURNS]}]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    assert cli.main(["data", "preview", str(data), f"model.tiny.family={family}", *SHAPE, "data.eval_size=0"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("--- example") == 3 and "[[What" not in shown
    assert re.search(r"\[\[\s*four", shown) and re.search(r"\[\[\s*cba", shown), shown
    cfg = config.compose([*BASE, f"model.tiny.family={family}", f"data.source={data}"])
    labels = sft.build_trainer(cfg, tmp_path).train_dataset
    expected = [100 * sum(x != -100 for x in row) / len(row) for row in labels["labels"]]
    printed = [float(line.split(", ")[1].split("%")[0]) for line in shown.splitlines() if line.startswith("---")]
    assert printed == pytest.approx(expected, abs=0.05)


def test_data_preview_refuses_what_it_cannot_show(capsys):
    assert_refused(cli.main(["data", "preview", "n=zero"]), capsys.readouterr().err, "n=zero is not a valid int")
    assert_refused(cli.main(["data", "preview", "recipe=tiny_dpo"]), capsys.readouterr().err, "not data.format=pref")


@pytest.mark.parametrize("family", ["mistral", "llama3"])
def test_ft_eval_masks_as_training_did(family):
    """`ft eval` scores the same tokens training trained on, prefix-rendered templates included."""
    from ft.finish import evaluate
    from ft.models import load_tokenizer

    cfg = config.compose([*SHAPE, f"model.tiny.family={family}"])
    tokenizer = load_tokenizer(cfg.model)
    templates.choose(tokenizer, family)  # what training saves with the run
    features = evaluate._features({"messages": conversation(family)}, tokenizer, cfg)
    ids, expected = _expected_mask(tokenizer, conversation(family), family)
    assert features["input_ids"] == ids
    assert [int(label != -100) for label in features["labels"]] == expected
