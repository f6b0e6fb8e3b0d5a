"""data.format=auto: each format recognised from the columns of a file in a temp dir (after data.columns
renames them), among the formats the task trains on; columns that fit none or several refused in one line."""

import pytest

from conftest import QUICK, assert_refused, run_ft, write_jsonl
from ft import cli, config, data
from ft.data import detect
from ft.errors import FtError

TURNS = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]
ROWS = {  # format -> (task, a row of it)
    "messages": ("sft", {"messages": TURNS}),
    "sharegpt": (
        "sft",
        {"conversations": [{"from": "human", "value": "What is 2 + 3?"}, {"from": "gpt", "value": "5"}]},
    ),
    "alpaca": ("sft", {"instruction": "What is 2 + 3?", "input": "", "output": "5"}),
    "prompt_completion": ("sft", {"prompt": "What is 2 + 3?", "completion": "5"}),
    "text": ("sft", {"text": "2 + 3 = 5"}),
    "preference": ("dpo", {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}),
    "unpaired": ("kto", {"prompt": "What is 2 + 3?", "completion": "5", "label": True}),
    "prompts": ("grpo", {"prompt": "What is 2 + 3?", "answer": "5"}),
}


def compose(tmp_path, rows, *extra):
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    return config.compose([f"data.source={path}", "data.eval_size=0", *extra])


@pytest.mark.parametrize("fmt", ROWS)
def test_each_format_is_recognised_from_its_columns(fmt, tmp_path, capsys):
    task, row = ROWS[fmt]
    cfg = compose(tmp_path, [row] * 4, f"task={task}")
    assert cfg.data.format == "auto"
    cfg = detect.resolved(cfg, announce=True)
    assert cfg.data.format == fmt
    assert (
        capsys.readouterr().out.strip()
        == f"ft: data.format=auto: {fmt} (from the columns of {tmp_path / 'data.jsonl'})"
    )
    train, _ = data.load(cfg.data, task)
    assert len(train) == 4


def test_renamed_columns_are_recognised(tmp_path):
    cfg = compose(
        tmp_path,
        [{"question": "q", "answer": "a"}] * 3,
        "+data.columns.prompt=question",
        "+data.columns.completion=answer",
    )
    cfg = detect.resolved(cfg)
    assert cfg.data.format == "prompt_completion"
    assert data.load(cfg.data)[0][0] == {"prompt": "q", "completion": "a"}


def test_implicit_prompt_preference_pairs_are_recognised_and_split(tmp_path):
    answer = [{"role": "assistant", "content": "5"}]
    pair = {"chosen": TURNS[:1] + answer, "rejected": TURNS[:1] + [{"role": "assistant", "content": "6"}]}
    cfg = compose(tmp_path, [pair] * 3, "task=dpo")
    cfg = detect.resolved(cfg)
    assert cfg.data.format == "preference"
    row = data.load(cfg.data, "dpo")[0][0]
    assert row["prompt"] == TURNS[:1] and row["chosen"] == answer  # TRL's extract_prompt: the shared turns


def test_the_most_specific_fit_wins():
    assert detect.detect(["prompt", "completion", "label"], "kto") == "unpaired"
    assert detect.detect(["prompt", "completion", "id"], "sft") == "prompt_completion"
    assert detect.detect(["prompt", "completion", "label"], "grpo") == "prompts"  # grpo keeps the rest for rewards


@pytest.mark.parametrize(
    ("task", "fmt"), [("sft", "messages"), ("dpo", "preference"), ("kto", "unpaired"), ("grpo", "prompts")]
)
def test_synthetic_data_is_generated_in_the_tasks_format(task, fmt):
    cfg = config.compose([f"task={task}", "data.synthetic.num_examples=20"])
    cfg = detect.resolved(cfg)
    assert cfg.data.format == fmt
    train, evaluation = data.load(cfg.data, task)
    assert len(train) + len(evaluation) == 20


def test_several_fits_are_refused_naming_the_choices():
    with pytest.raises(FtError) as e:
        detect.detect(["messages", "text"], "sft")
    assert "fit several formats (messages, text)" in str(e.value)
    assert "data.format=messages or data.format=text" in str(e.value)


def test_columns_that_fit_nothing_are_refused_by_the_cli(tmp_path, capsys):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}] * 3)
    code = cli.main(["train", f"data.source={path}", f"training.output_dir={tmp_path / 'runs'}", *QUICK])
    line = assert_refused(code, capsys.readouterr().err, "the columns ['question', 'answer'] fit none", alone=False)
    assert "data.format=..." in line and "data.columns" in line
    assert not (tmp_path / "runs").exists()


def test_a_task_refuses_another_tasks_format_after_detection(tmp_path, capsys):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": TURNS}] * 3)
    code = cli.main(["train", "task=dpo", f"data.source={path}", f"training.output_dir={tmp_path / 'runs'}", *QUICK])
    assert_refused(
        code,
        capsys.readouterr().err,
        "fit none of the formats task=dpo trains on",
        "look like messages data",
        alone=False,
    )


@pytest.mark.slow
def test_a_sharegpt_file_trains(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": f"What is {i} + 1?"}, {"from": "gpt", "value": str(i + 1)}]}
        for i in range(24)
    ]
    path = write_jsonl(tmp_path / "chats.jsonl", rows)
    result = run_ft(
        "train",
        f"data.source={path}",
        f"training.output_dir={tmp_path / 'runs'}",
        *QUICK,
        "training.max_steps=2",
        warm=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ft: data.format=auto: sharegpt (from the columns of {path})" in result.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "format: sharegpt" in (run_dir / "config.yaml").read_text()  # eval / generate read the concrete format


def _typed(content: str) -> list[dict]:
    """`content` as typed parts (OpenAI's form), split in two text parts where it has a space."""
    head, space, tail = content.partition(" ")
    return [{"type": "text", "text": head + space}] + ([{"type": "text", "text": tail}] if tail else [])


def test_typed_text_parts_train_on_the_tokens_of_plain_strings(tmp_path):
    """Contents given as lists of text parts train with the input_ids and trained mask of the same contents as
    strings, through the functions training tokenizes with (ft data preview's)."""
    from ft import models
    from ft.commands import preview

    conversations = [
        [{"role": "system", "content": "Be brief."}, *TURNS],
        [*TURNS, {"role": "user", "content": "And 4 + 4?"}, {"role": "assistant", "content": "It is 8"}],
    ]
    typed = [[{**turn, "content": _typed(turn["content"])} for turn in turns] for turns in conversations]
    converted, encoded = [], []
    for name, rows in (("plain", conversations), ("typed", typed)):
        path = write_jsonl(tmp_path / f"{name}.jsonl", [{"messages": turns} for turns in rows])
        cfg = detect.resolved(config.compose([f"data.source={path}", "data.eval_size=0"]))
        train, _ = data.load(cfg.data)
        converted.append(train.to_list())
        encoded.append(preview.examples(cfg, models.load_tokenizer(cfg.model), train)[0])
    assert typed[1][3]["content"] == [{"type": "text", "text": "It "}, {"type": "text", "text": "is 8"}]
    assert converted[0] == converted[1] == [{"messages": turns} for turns in conversations]
    assert encoded[0] == encoded[1]
    assert all(1 in mask and 0 in mask for _, mask in encoded[1])


def test_typed_text_parts_of_preference_pairs_read_as_strings(tmp_path):
    plain = {"prompt": TURNS[:1], "chosen": [TURNS[1]], "rejected": [{"role": "assistant", "content": "6 or so"}]}
    typed = {name: [{**turn, "content": _typed(turn["content"])} for turn in turns] for name, turns in plain.items()}
    rows = []
    for name, row in (("plain", plain), ("typed", typed)):
        (tmp_path / name).mkdir()
        cfg = detect.resolved(compose(tmp_path / name, [row] * 3, "task=dpo"))
        rows.append(data.load(cfg.data, "dpo")[0][0])
    assert rows[0] == rows[1] == plain
