"""data.sources: two local files of different formats mixed into one conversational training set,
deterministically from data.seed, with eval from each source or from an eval-only source."""

import pytest

from conftest import QUICK, assert_refused, run_ft, write_jsonl
from ft import cli, config, data
from ft.data import detect


def _files(tmp_path):
    chat = [
        {"messages": [{"role": "user", "content": f"a{i}"}, {"role": "assistant", "content": "x"}]} for i in range(10)
    ]
    share = [{"conversations": [{"from": "human", "value": f"b{i}"}, {"from": "gpt", "value": "y"}]} for i in range(20)]
    return write_jsonl(tmp_path / "a.jsonl", chat), write_jsonl(tmp_path / "b.jsonl", share)


def _mixture(tmp_path, a: str, b: str, *extra):
    path_a, path_b = _files(tmp_path)
    sources = f"data.sources=[{{source:{path_a}{a}}},{{source:{path_b}{b}}}]"
    cfg = config.compose([sources, "data.eval_size=0", *extra])
    cfg = detect.resolved(cfg)
    return data.load(cfg.data)


def _prompts(rows) -> list[str]:
    return [row["messages"][0]["content"] for row in rows]


def test_weights_share_the_rows_and_formats_are_converted_per_source(tmp_path):
    train, evaluation = _mixture(tmp_path, ",weight:1", ",weight:3")
    prompts = _prompts(train)
    assert evaluation is None and len(prompts) == 30  # 10 + 20 rows, shared 1 : 3
    assert sum(p.startswith("a") for p in prompts) == round(30 / 4) and sum(p.startswith("b") for p in prompts) == 22
    assert train[0]["messages"][1]["role"] == "assistant"  # sharegpt's gpt turns became assistant turns


def test_num_examples_repeats_a_small_source_and_the_other_gives_all_its_rows(tmp_path):
    prompts = _prompts(_mixture(tmp_path, ",num_examples:25", "")[0])
    a = [p for p in prompts if p.startswith("a")]
    assert len(a) == 25 and len(set(a)) == 10  # every row of a, some twice
    assert sorted(p for p in prompts if p.startswith("b")) == sorted(f"b{i}" for i in range(20))


def test_the_mix_is_deterministic_from_the_seed(tmp_path):
    first = _prompts(_mixture(tmp_path, ",weight:1", ",weight:1", "data.seed=1")[0])
    again = _prompts(_mixture(tmp_path, ",weight:1", ",weight:1", "data.seed=1")[0])
    other = _prompts(_mixture(tmp_path, ",weight:1", ",weight:1", "data.seed=2")[0])
    assert first == again
    assert first != other and len(first) == len(other) == 30


def test_eval_is_carved_from_each_source(tmp_path):
    train, evaluation = _mixture(tmp_path, "", "", "data.eval_size=0.2")
    held_out = _prompts(evaluation)
    assert sum(p.startswith("a") for p in held_out) == 2 and sum(p.startswith("b") for p in held_out) == 4
    assert not set(held_out) & set(_prompts(train)) and len(train) == 24


def test_an_eval_only_source_is_the_whole_eval_set(tmp_path):
    train, evaluation = _mixture(tmp_path, "", ",eval_only:true", "data.eval_size=0.2")
    assert sorted(_prompts(evaluation)) == sorted(f"b{i}" for i in range(20))
    assert sorted(_prompts(train)) == sorted(f"a{i}" for i in range(10))  # nothing carved out of a


def test_sources_of_different_forms_are_refused(tmp_path, capsys):
    path_a, _ = _files(tmp_path)
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "plain"}] * 4)
    code = cli.main(
        ["train", f"data.sources=[{{source:{path_a}}},{{source:{text}}}]", f"training.output_dir={tmp_path}/runs"]
    )
    assert_refused(code, capsys.readouterr().err, "data.sources become different dataset forms", alone=False)


@pytest.mark.slow
def test_a_mixture_trains(tmp_path):
    path_a, path_b = _files(tmp_path)
    sources = f"data.sources=[{{source:{path_a},weight:1}},{{source:{path_b},weight:1}},{{source:synthetic}}]"
    result = run_ft("train", sources, f"training.output_dir={tmp_path}/runs", *QUICK, "training.max_steps=2", warm=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data.sources[1].format=auto: sharegpt" in result.stdout
    assert "data.sources[2].format=auto: messages (synthetic data for task=sft)" in result.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = config.to_yaml(config.compose([sources]))  # what was asked, auto ...
    assert saved.count("format: auto") == 4
    assert (run_dir / "config.yaml").read_text().count("format: auto") == 0  # ... saved resolved


def test_a_missing_source_file_is_refused_before_anything_loads(tmp_path, capsys):
    code = cli.main(["train", f"data.sources=[{{source:synthetic}},{{source:{tmp_path}/none.jsonl}}]"])
    assert_refused(code, capsys.readouterr().err, f"data.sources[1].source: no such file or directory '{tmp_path}")
