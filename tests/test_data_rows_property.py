"""No shape of row ends in a traceback: hypothesis writes files of generated rows for every text format (right
types, wrong types, missing keys, empty lists, nested junk, unicode, huge strings) and reads them the way
`ft train` and `ft data preview` do (the JSON reader, format detection, conversion, the chat template).
Each file either loads in the format's documented form or is refused with an FtError (one `ft: error:`
line, exit 2, at the CLI) that names the row, or for a file the reader cannot take, the file."""

import dataclasses
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ft import config, data
from ft.data import templates
from ft.errors import FtError

EXAMPLES = 40  # files per format, of 13-25 rows: at least 520 rows per format

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
ODD_TEXT = st.sampled_from(["ünïcødé ✓ 中文 🙂", "x" * 20_000, "{% raw %}{{ x }}", "<|im_end|>", "\x00", "line\nbreak"])
TEXT = st.text(min_size=1, max_size=30).filter(str.strip) | ODD_TEXT
ROLE = st.sampled_from(["system", "user", "assistant", "tool", "", "USER"])
FLAG = st.sampled_from([0, 1, 0.5, True, False, "no", None])


CALL = st.fixed_dictionaries(
    {"name": st.sampled_from(["f", "", None])}, optional={"arguments": JUNK | st.sampled_from(["{}", '{"a": 1}', "{"])}
)
CALLS = st.lists(CALL | st.fixed_dictionaries({"type": st.just("function"), "function": CALL}), max_size=2)


def _turn(role_key, content_key):
    roles = ROLE | st.sampled_from(["human", "gpt", "bot"])
    keys = {
        role_key: roles | JUNK,
        content_key: TEXT | st.sampled_from(["", " "]) | JUNK,
        "weight": FLAG,
        "train": FLAG,
        "reasoning_content": TEXT | JUNK,
        "tool_calls": CALLS | JUNK,
    }
    return st.fixed_dictionaries({}, optional=keys)


ODD_TURNS = st.lists(_turn("role", "content") | _turn("from", "value"), max_size=4)


def _wild(strategy):
    """The documented value mostly; sometimes junk, or turns of any roles, keys and flags."""
    return st.one_of(strategy, strategy, st.sampled_from(["", " "]), JUNK, ODD_TURNS)


def _conversation(speakers=("user", "assistant"), role_key="role", content_key="content"):
    return st.lists(TEXT, min_size=2, max_size=5).map(
        lambda texts: [{role_key: speakers[i % 2], content_key: text} for i, text in enumerate(texts)]
    )


def _said_by(role):
    return TEXT.map(lambda text: [{"role": role, "content": text}])


PROMPT_TURNS, ANSWER_TURNS = _said_by("user"), _said_by("assistant")
# format: (a task that trains on it, its fields' documented values, optional fields); a text prompt and its
# answers, or the same as turns (rows of one file may mix the two)
FORMATS = {
    "messages": ("sft", {"messages": _conversation()}, {"train": st.just(True), "tools": st.just([]) | st.none()}),
    "sharegpt": ("sft", {"conversations": _conversation(("human", "gpt"), "from", "value")}, {}),
    "alpaca": ("sft", {"instruction": TEXT, "output": TEXT}, {"input": TEXT}),
    "prompt_completion": ("sft", {"prompt": TEXT, "completion": TEXT}, {}),
    "text": ("sft", {"text": TEXT}, {}),
    "preference": ("dpo", {"prompt": TEXT | PROMPT_TURNS, "chosen": TEXT | ANSWER_TURNS, "rejected": TEXT}, {}),
    "unpaired": ("kto", {"prompt": TEXT | PROMPT_TURNS, "completion": TEXT | ANSWER_TURNS, "label": st.booleans()}, {}),
    "prompts": ("grpo", {"prompt": TEXT | PROMPT_TURNS}, {"answer": JUNK}),
}


def _files(fields: dict, optional: dict):
    """13-25 rows: all as documented (some still refused, e.g. empty answers), or each field possibly wild and
    possibly missing."""
    documented = st.fixed_dictionaries(fields, optional=optional)
    everything = {**fields, **optional}
    wild = st.fixed_dictionaries({name: _wild(value) for name, value in everything.items()}) | st.fixed_dictionaries(
        {}, optional={name: _wild(value) for name, value in everything.items()}
    )
    return st.lists(documented, min_size=13, max_size=25) | st.lists(wild, min_size=13, max_size=25)


ROW_NAMED = re.compile(
    r"^(data row \d+: |.*\.jsonl line \d+: |cannot read data\.source=|data\.format=\w+ needs column"
    r"|the data's assistant turns carry reasoning|the data has tool calls)"  # or of the whole file
)


@pytest.fixture(scope="module")
def tokenizer():
    from ft import models

    return models.load_tokenizer(config.compose([]).model)


def _documented(fmt, train) -> None:
    """The loaded rows are in TRL's form for `fmt` (ft.data's docstring)."""
    for row in train:
        if data.is_conversational(fmt):
            assert all(
                isinstance(t["content"], str) and t["role"] in ("system", "user", "assistant") for t in row["messages"]
            )
        for name in ("prompt", "completion", "text", "chosen", "rejected"):
            value = row.get(name)
            if name in row and (fmt != "prompts" or name == "prompt"):
                assert isinstance(value, str) or all(isinstance(t["content"], str) for t in value), (name, value)
    for name in ("prompt", "completion", "chosen", "rejected"):  # one form per dataset: TRL reads it from row 0
        if name in train.column_names and (fmt != "prompts" or name == "prompt"):
            assert len({type(value) for value in train[name]}) == 1, train[name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_row_shape_loads_as_documented_or_is_refused_naming_the_row(fmt, tmp_path_factory, tokenizer):
    task, fields, optional = FORMATS[fmt]
    cfg = config.compose([f"task={task}", f"data.format={fmt}", "data.eval_size=0"]).data
    seen = {"rows": 0, "loaded": 0, "refused": 0}

    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )
    @given(_files(fields, optional))
    def check(rows):
        path = tmp_path_factory.mktemp(fmt) / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        seen["rows"] += len(rows)
        try:
            train, _ = data.load(dataclasses.replace(cfg, source=str(path)), task)
            if data.is_conversational(fmt):
                templates.check_rows(train, tokenizer, "train")
        except FtError as e:
            assert ROW_NAMED.match(str(e)) and "\n" not in str(e), str(e)
            seen["refused"] += 1
            return
        _documented(fmt, train)
        seen["loaded"] += 1

    check()
    print(f"{fmt}: {seen}")
    assert seen["rows"] >= 500 and seen["loaded"] and seen["refused"], seen
