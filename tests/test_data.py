"""Each data format: a small file -> TRL's form -> tokenized examples whose loss mask is non-empty and
covers exactly the assistant (or completion) tokens."""

import json

import pytest

from conftest import write_jsonl
from ft import config, data
from ft.errors import FtError
from ft.tasks.sft import build_trainer

CONVERSATIONS = [("What is 2 + 3?", "5"), ("Reverse the word: stone", "enots"), ("Say hi", "hi there")]


def messages_file(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in CONVERSATIONS
    ]
    return write_jsonl(tmp_path / "chat.jsonl", rows)


def alpaca_file(tmp_path):
    rows = [{"instruction": q, "input": "" if i else "context", "output": a} for i, (q, a) in enumerate(CONVERSATIONS)]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows))
    return path


def sharegpt_file(tmp_path):
    import pandas as pd

    rows = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in CONVERSATIONS]
    path = tmp_path / "sharegpt.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def prompt_completion_file(tmp_path):
    path = tmp_path / "pc.csv"
    path.write_text("question,answer\n" + "".join(f'"{q}","{a}"\n' for q, a in CONVERSATIONS))
    return path


def text_file(tmp_path):
    return write_jsonl(tmp_path / "text.jsonl", [{"text": f"{q} {a}"} for q, a in CONVERSATIONS])


FORMATS = {
    "messages": (messages_file, []),
    "alpaca": (alpaca_file, []),
    "sharegpt": (sharegpt_file, []),
    "prompt_completion": (prompt_completion_file, ["+data.columns.prompt=question", "+data.columns.completion=answer"]),
    "text": (text_file, []),
}


def compose_for(fmt, path, tmp_path, *extra):
    return config.compose(
        [
            f"data.source={path}",
            f"data.format={fmt}",
            "data.eval_size=0",
            "logging=none",
            f"training.output_dir={tmp_path}/runs",
            *FORMATS[fmt][1],
            *extra,
        ]
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_converts_to_trl_form(fmt, tmp_path):
    cfg = compose_for(fmt, FORMATS[fmt][0](tmp_path), tmp_path)
    train, evaluation = data.load(cfg.data)
    assert evaluation is None and len(train) == len(CONVERSATIONS)
    row = train[1]
    if data.is_conversational(fmt):
        assert row["messages"] == [
            {"role": "user", "content": CONVERSATIONS[1][0]},
            {"role": "assistant", "content": CONVERSATIONS[1][1]},
        ]
    elif fmt == "prompt_completion":
        assert row == {"prompt": CONVERSATIONS[1][0], "completion": CONVERSATIONS[1][1]}
    else:
        assert row == {"text": " ".join(CONVERSATIONS[1])}


def test_alpaca_input_is_appended_to_the_instruction(tmp_path):
    cfg = compose_for("alpaca", alpaca_file(tmp_path), tmp_path)
    train, _ = data.load(cfg.data)
    assert train[0]["messages"][0]["content"] == f"{CONVERSATIONS[0][0]}\n\ncontext"


def test_system_prompt_is_prepended(tmp_path):
    cfg = compose_for("messages", messages_file(tmp_path), tmp_path, "data.system_prompt=Be brief.")
    train, _ = data.load(cfg.data)
    assert train[0]["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("fmt", ["messages", "alpaca", "sharegpt", "prompt_completion"])
def test_loss_mask_covers_exactly_the_answers(fmt, tmp_path):
    cfg = compose_for(fmt, FORMATS[fmt][0](tmp_path), tmp_path)
    trainer = build_trainer(cfg, tmp_path / "run")
    tokenizer = trainer.processing_class
    for example, (_, answer) in zip(trainer.train_dataset, CONVERSATIONS):
        trained = [token for token, label in zip(example["input_ids"], example["labels"]) if label != -100]
        assert 0 < len(trained) < len(example["input_ids"])
        assert tokenizer.decode(trained) == answer + tokenizer.eos_token  # the answer and its EOS, nothing else


def test_text_format_trains_on_every_token(tmp_path):
    cfg = compose_for("text", text_file(tmp_path), tmp_path)
    trainer = build_trainer(cfg, tmp_path / "run")
    example = trainer.train_dataset[0]
    assert len(example["input_ids"]) > 3
    assert "labels" not in example or -100 not in example["labels"]


def test_synthetic_tasks_are_deterministic():
    from ft.data import synthetic

    assert synthetic.generate(["add", "sort"], 10, seed=3) == synthetic.generate(["add", "sort"], 10, seed=3)
    assert synthetic.generate(["add"], 10, seed=3) != synthetic.generate(["add"], 10, seed=4)


def test_synthetic_eval_split_is_held_out():
    cfg = config.compose(["data.synthetic.num_examples=400", "data.eval_size=40"])
    train, evaluation = data.load(cfg.data)
    assert len(train) == 360 and len(evaluation) == 40
    assert not {json.dumps(r["messages"]) for r in train} & {json.dumps(r["messages"]) for r in evaluation}


def test_missing_column_names_the_columns_found(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}])
    cfg = compose_for("alpaca", path, tmp_path)
    with pytest.raises(FtError, match=r"needs column\(s\) \['instruction', 'output'\].*question.*answer"):
        data.load(cfg.data)


def test_bad_role_names_the_row(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    cfg = compose_for("messages", write_jsonl(tmp_path / "roles.jsonl", rows), tmp_path)
    with pytest.raises(FtError, match="data row 1: unknown role 'human'"):
        data.load(cfg.data)
