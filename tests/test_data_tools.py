"""Tool-calling SFT data: assistant turns with OpenAI-style `tool_calls` (arguments as an object or as JSON
text), `tool` turns with the results, a per-row `tools` list, rendered by the family's own template. The calls
and answers are trained, each through its end-of-turn token; tool results, user and system turns never are."""

import json

import pytest

from conftest import assert_refused, write_jsonl
from ft import cli, config, data
from ft.data import templates
from ft.errors import FtError
from ft.models import families

SHAPE = ["model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "model.tiny.num_hidden_layers=2"]
BASE = [*SHAPE, "data.eval_size=0", "training.eval_strategy=no", "training.save_strategy=no", "logging=none"]
BASE += ["training.max_length=1024"]  # the tool schemas in the system turn are long for the tiny tokenizer


def _function(name: str, argument: str, kind: str) -> dict:
    parameters = {"type": "object", "properties": {argument: {"type": kind}}, "required": [argument]}
    return {"type": "function", "function": {"name": name, "description": f"{name} a value", "parameters": parameters}}


TOOLS = [_function("square", "n", "integer"), _function("capital", "country", "string")]
ROWS = [
    {
        "messages": [
            {"role": "user", "content": "What is 12 squared?"},
            {
                "role": "assistant",
                "tool_calls": [{"type": "function", "function": {"name": "square", "arguments": {"n": 12}}}],
            },
            {"role": "tool", "name": "square", "content": "144"},
            {"role": "assistant", "content": "It is 144."},
        ],
        "tools": TOOLS,
    },
    {  # arguments as JSON text, a flat call, a tool_call_id: all as people's files have them
        "messages": [
            {"role": "user", "content": "Capital of Peru?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "name": "capital", "arguments": '{"country": "Peru"}'}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "Lima"},
            {"role": "assistant", "content": "Lima."},
        ],
        "tools": json.dumps(TOOLS),
    },
    {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}], "tools": None},
]


@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
def test_calls_and_answers_are_trained_and_tool_results_never(family, tmp_path):
    from ft.tasks import sft

    path = write_jsonl(tmp_path / "tools.jsonl", ROWS)
    cfg = config.compose([*BASE, f"model.tiny.family={family}", f"data.source={path}"])
    trainer = sft.build_trainer(cfg, tmp_path)
    tokenizer = trainer.processing_class
    end_of_turn = families.FAMILIES[family].end_of_turn
    trained_texts = []
    for row, source in zip(trainer.train_dataset, ROWS):
        batch = trainer.data_collator([row])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        trained = tokenizer.decode([i for i, label in zip(ids, labels) if label != -100])
        whole = tokenizer.decode(ids)
        assistant_turns = [m for m in source["messages"] if m["role"] == "assistant"]
        assert trained.count(end_of_turn) == len(assistant_turns), trained  # each span learns to stop
        assert source["messages"][0]["content"] not in trained  # the user's turn
        assert "tool_response" not in trained and "144" not in trained.split("It is")[0], trained  # the result
        assert "# Tools" not in trained  # the system turn that lists the tools
        trained_texts.append((trained, whole))
    assert '{"name": "square", "arguments": {"n": 12}}' in trained_texts[0][0]
    assert '{"name": "capital", "arguments": {"country": "Peru"}}' in trained_texts[1][0]
    assert '"name": "capital"' in trained_texts[1][1].split("<|im_start|>user")[0]  # the schemas, in the system turn


def test_the_tool_families_are_those_whose_templates_render_calls(tmp_path):
    """templates.TOOL_FAMILIES, named in the refusal, is what each family's template does."""
    from ft import models

    rows = data.load(config.compose([*BASE, f"data.source={write_jsonl(tmp_path / 'tools.jsonl', ROWS)}"]).data)[0]
    rendering = []
    for family in families.FAMILIES:
        tokenizer = models.load_tokenizer(config.compose([*SHAPE, f"model.tiny.family={family}"]).model)
        templates.choose(tokenizer, family)
        try:
            templates.check_tools(rows, tokenizer)
            rendering.append(family)
        except FtError as e:
            assert "model.tiny.family=qwen2_5 / qwen3 / qwen3_moe" in str(e)
    assert tuple(rendering) == templates.TOOL_FAMILIES


def test_a_template_without_tools_is_refused_in_one_line(tmp_path, capsys):
    path = write_jsonl(tmp_path / "tools.jsonl", ROWS)
    code = cli.main(["train", *BASE, f"data.source={path}", "training.max_steps=1"])  # the tiny Llama's ChatML
    assert_refused(
        code, capsys.readouterr().err, "the data has tool calls, which the model's chat template", alone=False
    )


@pytest.mark.parametrize(
    "call, expected",
    [
        ({"function": {"arguments": {}}}, "messages turn 2's tool call 1 has no function name"),
        ({"name": "square", "arguments": "{n: 12"}, "messages turn 2's call of square: its arguments are not JSON"),
        (
            {"name": "square", "arguments": [12]},
            "messages turn 2's call of square: its arguments are [12], not an object",
        ),
    ],
)
def test_bad_tool_calls_are_refused_naming_the_row(call, expected, tmp_path):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [call]}]}]
    with pytest.raises(FtError, match="^data row 0: " + expected.replace("(", r"\(").replace("[", r"\[")):
        data.load(config.compose([*BASE, f"data.source={write_jsonl(tmp_path / 'bad.jsonl', rows)}"]).data)


def test_arguments_of_different_functions_keep_only_their_own_keys(tmp_path):
    """datasets reads a column of objects with every row's keys: `square`'s arguments would get `country: null`
    from `capital`'s, and each schema the other's parameters. ft leaves those nulls out."""
    rows = [
        {"messages": [ROWS[0]["messages"][0], ROWS[0]["messages"][1]], "tools": TOOLS},
        {
            "messages": [
                ROWS[1]["messages"][0],
                {"role": "assistant", "tool_calls": [{"name": "capital", "arguments": {"country": "Peru"}}]},
            ],
            "tools": TOOLS,
        },
    ]
    train = data.load(config.compose([*BASE, f"data.source={write_jsonl(tmp_path / 'tools.jsonl', rows)}"]).data)[0]
    calls = [json.loads(row["messages"][1]["tool_calls"])[0]["function"]["arguments"] for row in train]
    assert calls == [{"n": 12}, {"country": "Peru"}]
    assert json.loads(train[0]["tools"]) == TOOLS


@pytest.mark.slow
def test_the_tool_recipe_trains_and_reports_the_call_exact_match(tmp_path, capsys):
    """recipe=tiny_tools end to end, briefly: the synthetic tool conversations train, and the end-of-run report
    scores the first call of each held-out conversation and its final answer (bench/RESULTS.md has a full run)."""
    from ft.training import launch

    overrides = ["training.max_steps=1", "training.per_device_train_batch_size=2", "data.synthetic.num_examples=12"]
    overrides += ["data.eval_size=2", "training.eval_strategy=no", "training.eval_before_training=false"]
    cfg = config.compose(["recipe=tiny_tools", "logging=none", f"training.output_dir={tmp_path}", *overrides])
    result = launch.train(cfg)
    assert {"base_tool_call_exact_match", "tool_call_exact_match", "exact_match"} <= result.metrics.keys()
    out = capsys.readouterr().out
    assert "ft: tool-call exact match (function and arguments) on 2 held-out prompts: " in out
    assert '(expected \'<tool_call>\\n{"name": ' in out  # the call as the template renders it, to match


@pytest.mark.parametrize("task", ["dpo", "grpo", "distill"])
def test_synthetic_tool_tasks_are_refused_for_tasks_that_do_not_train_on_whole_conversations(task, capsys):
    code = cli.main(["train", f"task={task}", "data.synthetic.tasks=[multiply]", "data.format=auto"])
    assert_refused(code, capsys.readouterr().err, f"which task={task} does not train on", alone=False)
