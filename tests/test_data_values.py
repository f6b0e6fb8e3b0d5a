"""Rows as people's files have them: numbers and booleans where text is expected (a CSV's answers, JSON's
true), null and nested values, and per-turn training flags (`weight: 0|1`, `train: true|false`, on a turn or
as the row's default). Each becomes what the format documents or is refused naming the row and the field."""

import re

import pytest

from conftest import assert_refused, write_jsonl
from ft import cli, config, data
from ft.errors import FtError
from ft.models import families

SHAPE = ["model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "model.tiny.num_hidden_layers=2"]
BASE = [*SHAPE, "data.eval_size=0", "training.eval_strategy=no", "training.save_strategy=no", "logging=none"]


def _load(path, *overrides):
    cfg = config.compose([*BASE, f"data.source={path}", *overrides])
    return data.load(cfg.data)[0]


def test_csv_columns_are_read_as_the_text_written_there(tmp_path, capsys):
    """A CSV has no types: its answers stay as written (007, 2.50), an empty cell is "". On c2132fe the
    numbers were read as integers and the chat template raised a TypeError."""
    path = tmp_path / "answers.csv"
    path.write_text('prompt,completion\n"Say 2",2\n"Say 007",007\n"Say 2.50",2.50\n"Say true",true\n"Say nothing",\n')
    train = _load(path)
    assert train["completion"] == ["2", "007", "2.50", "true", ""]
    assert cli.main(["data", "preview", str(path), "n=2", *BASE]) == 0
    assert "[[007" in capsys.readouterr().out


def test_json_numbers_and_booleans_become_text_as_json_writes_them(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": 12}, {"role": "assistant", "content": 2.5}]},
        {"messages": [{"role": "user", "content": "Is it?"}, {"role": "assistant", "content": True}]},
    ]
    train = _load(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert [[m["content"] for m in row] for row in train["messages"]] == [["12", "2.5"], ["Is it?", "true"]]


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": "p", "completion": None}, "'completion' is null"),
        ({"prompt": {"text": "p"}, "completion": "c"}, '\'prompt\' is an object ({"text": "p"}), not text'),
        ({"prompt": ["p"], "completion": "c"}, "'prompt' is a list"),
        (
            {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]},
            "messages turn 1's 'content' is null",
        ),
        ({"messages": [{"content": "hi"}, {"role": "assistant", "content": "a"}]}, "messages turn 1 has no 'role'"),
        (
            {"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "a"}]},
            "messages turn 1's 'content' part 1 is \"hi\", not a typed part",
        ),
        ({"messages": ["hi", "there"]}, 'messages turn 1 is "hi", not an object'),
        ({"messages": "hi"}, "'messages' is \"hi\", not a list of turns"),
        (
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "tool", "content": "4"}], "tools": []},
            "turn 2 is a tool's result, but no tool call comes before it",
        ),
    ],
)
def test_null_and_nested_values_where_text_is_required_are_refused_naming_row_and_field(row, expected, tmp_path):
    first = (
        {"prompt": "p", "completion": "c"}
        if "prompt" in row
        else {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    path = write_jsonl(tmp_path / "rows.jsonl", [first, row])
    with pytest.raises(FtError, match="^" + re.escape(f"data row 1: {expected}")):
        _load(path)


CHAT = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "five", "weight": 0},
    {"role": "user", "content": "Try again"},
    {"role": "assistant", "content": "four"},
]


@pytest.mark.parametrize(
    "family", ["llama", "mistral", "qwen2_5"]
)  # generation markers, prefix rendering, TRL's variant
def test_a_turn_marked_not_to_train_contributes_no_label(family, tmp_path, capsys):
    """`weight: 0` on a turn, `train: false` as the row's default with one turn set back to true: those turns
    carry no label, the others each train through their end-of-turn token. On c2132fe the flags were ignored."""
    from ft.tasks import sft

    rows = [
        {"messages": CHAT},
        {"train": False, "messages": [*CHAT[:3], {"role": "assistant", "content": "four", "train": True}]},
        {"messages": [CHAT[0], {"role": "assistant", "content": "four"}]},  # no flags: the assistant turn trains
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = config.compose([*BASE, f"model.tiny.family={family}", f"data.source={path}"])
    trainer = sft.build_trainer(cfg, tmp_path)
    assert "turns marked train: false / weight: 0 left out" in capsys.readouterr().out
    tokenizer = trainer.processing_class
    end_of_turn = tokenizer.eos_token if family == "llama" else families.FAMILIES[family].end_of_turn
    for row in trainer.train_dataset:
        batch = trainer.data_collator([row])
        trained = [i for i, label in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist()) if label != -100]
        text = tokenizer.decode(trained)
        assert "five" not in text and "What" not in text and "Try" not in text, text
        assert text.count("four") == 1 and text.count(end_of_turn) == 1, text  # one span, and it learns to stop


@pytest.mark.parametrize(
    "turn, expected",
    [
        ({"weight": 0.5}, "weight=0.5: it is 0 (no loss on the turn) or 1"),
        ({"train": "no"}, 'train="no": it is true or false'),
        ({"train": False, "weight": 1}, "train=False and weight=1, which disagree"),
    ],
)
def test_bad_training_flags_are_refused(turn, expected, tmp_path):
    rows = [{"messages": [CHAT[0], {**CHAT[3], **turn}]}]
    with pytest.raises(FtError, match=re.escape(f"data row 0: messages turn 2 has {expected}")):
        _load(write_jsonl(tmp_path / "chat.jsonl", rows))


def test_flags_that_leave_nothing_to_train_or_train_a_user_turn_are_refused(tmp_path, capsys):
    nothing = [{"messages": [CHAT[0], {**CHAT[3], "weight": 0}]}]
    with pytest.raises(FtError, match="data row 0: every assistant turn is marked not to train"):
        _load(write_jsonl(tmp_path / "nothing.jsonl", nothing))
    user = [{"messages": [{**CHAT[0], "train": True}, CHAT[3]]}]
    with pytest.raises(FtError, match="data row 0: messages turn 1 is a user turn marked to train"):
        _load(write_jsonl(tmp_path / "user.jsonl", user))
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}])
    code = cli.main(
        ["train", *BASE, f"data.source={path}", "training.assistant_only_loss=false", "training.max_steps=1"]
    )
    assert_refused(
        code, capsys.readouterr().err, "training.assistant_only_loss=false trains on every token", alone=False
    )


def test_sharegpt_weights_and_a_mixture_with_unflagged_data(tmp_path):
    """axolotl's ShareGPT convention (`weight` on a turn) and a mixture of flagged and unflagged sources."""
    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": "hi"},
                {"from": "gpt", "value": "no", "weight": 0},
                {"from": "human", "value": "again"},
                {"from": "gpt", "value": "yes"},
            ]
        }
    ]
    flagged = write_jsonl(tmp_path / "flagged.jsonl", sharegpt * 4)
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"messages": [CHAT[0], CHAT[3]]}] * 4)
    train = _load(flagged)
    assert [m["train"] for m in train[0]["messages"]] == [False, False, False, True]
    cfg = config.compose([*BASE, f"data.sources=[{{source:{flagged}}},{{source:{plain}}}]"])
    mixed = data.load(cfg.data)[0]
    assert len(mixed) == 8 and {m["train"] for row in mixed["messages"] for m in row if m["role"] == "assistant"} == {
        False,
        True,
    }


REASONED = [
    {"messages": [CHAT[0], {"role": "assistant", "content": "4", "reasoning_content": "two and two make four"}]},
    {"messages": [CHAT[0], {"role": "assistant", "content": "4", "thinking": "two and two make four"}]},  # R1 style
    {"messages": [CHAT[0], {"role": "assistant", "content": "4"}]},
]


@pytest.mark.parametrize("reasoning", ["keep", "drop"])
def test_reasoning_is_trained_in_the_templates_think_block_or_dropped(reasoning, tmp_path):
    """Qwen3's template puts an assistant turn's reasoning in <think> before the answer; kept, it is trained with
    the answer; data.reasoning=drop trains on the answer alone."""
    from ft.tasks import sft

    path = write_jsonl(tmp_path / "reasoned.jsonl", REASONED)
    cfg = config.compose([*BASE, "model.tiny.family=qwen3", f"data.source={path}", f"data.reasoning={reasoning}"])
    trainer = sft.build_trainer(cfg, tmp_path)
    tokenizer = trainer.processing_class
    texts = [
        tokenizer.decode([i for i, label in zip(row["input_ids"], row["labels"]) if label != -100])
        for row in trainer.train_dataset
    ]
    reasoned = [text for text in texts if "two and two make four" in text]
    assert len(reasoned) == (2 if reasoning == "keep" else 0), texts
    assert all(re.search(r"<think>\s*two and two make four\s*</think>\s*4<\|im_end\|>", text) for text in reasoned)
    assert all("2 + 2?" not in text and "4<|im_end|>" in text for text in texts)


def test_reasoning_a_template_cannot_render_is_refused(tmp_path, capsys):
    path = write_jsonl(tmp_path / "reasoned.jsonl", REASONED)
    code = cli.main(["train", *BASE, f"data.source={path}", "training.max_steps=1"])  # the tiny Llama's template
    assert_refused(code, capsys.readouterr().err, "set data.reasoning=drop", alone=False)
