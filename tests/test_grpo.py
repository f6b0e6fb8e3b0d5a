"""GRPO (task=grpo) on the tiny model with real TRL objects: the prompts data format, ft's reward
functions, a reward function that raises, and SFT -> GRPO raising the held-out mean reward."""

import pytest

from conftest import write_jsonl
from ft import config, data
from ft.data import synthetic
from ft.errors import FtError
from ft.training import launch, rewards, session

TASKS = ["add", "reverse", "upper", "sort"]


def _compose(tmp_path, *extra):
    return config.compose(["recipe=tiny_grpo", "logging=none", f"training.output_dir={tmp_path / 'runs'}", *extra])


def test_plain_and_conversational_prompts_become_one_form_and_keep_their_other_columns(tmp_path):
    """A file mixing the two forms: every prompt becomes turns (a dataset has one form), as docs/your-data.md says."""
    rows = [
        {"question": "2+2?", "answer": "4"},
        {"question": [{"role": "user", "content": "3+3?"}], "answer": "6"},
    ]
    path = write_jsonl(tmp_path / "prompts.jsonl", rows)
    cfg = _compose(tmp_path, f"data.source={path}", "data.eval_size=0", "+data.columns.prompt=question")
    train, _ = data.load(cfg.data)
    assert train[0] == {"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4"}
    assert train[1] == {"prompt": [{"role": "user", "content": "3+3?"}], "answer": "6"}


@pytest.mark.parametrize(
    "metrics, line",
    [
        ({"base_reward": 0.25, "eval_reward": 0.5}, "ft: eval mean reward 0.2500 (start) -> 0.5000"),
        ({"eval_reward": 0.5}, "ft: eval mean reward 0.5000\n"),  # no start without eval_before_training
    ],
)
def test_summary_reports_the_start_reward_only_when_it_was_measured(metrics, line, tmp_path, capsys):
    session.print_summary(tmp_path, metrics)
    assert line in capsys.readouterr().out


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": " ", "answer": "1"}, "'prompt' is missing or empty"),
        ({"prompt": [{"role": "assistant", "content": "hi"}]}, "end with a user turn"),
    ],
)
def test_bad_prompt_row_names_the_row(row, expected, tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "p", "answer": "a"}] * 3 + [row])
    with pytest.raises(FtError, match="data row 3: ") as raised:
        data.load(_compose(tmp_path, f"data.source={path}", "data.eval_size=0").data)
    assert expected in str(raised.value)


def test_synthetic_prompts_carry_their_answers_and_are_held_out(tmp_path):
    rows = synthetic.generate_prompts(TASKS, 100, seed=3)
    sft_rows = synthetic.generate(TASKS, 100, seed=3)
    assert [r["prompt"] for r in rows] == [r["messages"][:1] for r in sft_rows]  # same prompts as SFT
    assert [r["answer"] for r in rows] == [r["messages"][1]["content"] for r in sft_rows]
    train, evaluation = data.load(_compose(tmp_path).data)
    assert len(evaluation) == 64 and set(train.column_names) == {"prompt", "answer"}
    assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in evaluation}


def test_builtin_rewards_on_plain_and_conversational_completions():
    turn = [{"role": "assistant", "content": " APPLE \n"}]
    assert rewards.exact_match(["APPLE", "apple", "APPLE x"], answer=["APPLE"] * 3) == [1.0, 0.0, 0.0]
    assert rewards.exact_match([turn], answer=["APPLE"]) == [1.0]
    assert rewards.bare_answer(["42", "42\nbecause", "  "]) == [1.0, 0.0, 0.0]
    with pytest.raises(FtError, match="'answer' column"):
        rewards.exact_match(["4"])
    gsm8k = "Natalia sold 48/2 = 24 clips in May.\n#### 72"
    assert rewards.last_number(["So 1,072 in all.", "It is 72.", "no idea"], answer=["1072", gsm8k, gsm8k]) == [
        1.0,
        1.0,
        0.0,
    ]
    assert rewards.resolve("json:dumps").__name__ == "dumps"  # module:function of the user's


@pytest.mark.slow
def test_grpo_after_sft_raises_the_held_out_reward(default_run, tmp_path):
    """SFT -> GRPO as two runs, the second continuing the first's adapter (model.adapter): the README's two
    commands, the default recipe's run (conftest's `default_run`), then recipe=tiny_grpo. The held-out mean
    reward is TRL's eval_reward: exact match of 4 completions sampled at temperature 1.5 for each of 64
    held-out `sort` prompts (256 samples), at the start (eval_on_start) and at the end. Measured: 0.19 -> 0.41
    (2026-12-04; from a 200-step SFT on `sort` alone it was 0.23 -> 0.49).
    Three evals of one unchanged model differed by at most 0.04: a rise of 0.1 is well beyond that noise.
    Why temperature 1.5: at 1.0 the SFT model's mistakes are confident ones RL cannot fix in a CPU budget (no
    rise in 100 steps at lr 1e-5 to 3e-5; lr 3e-4 degraded it), while at 1.5 many samples are wrong where the
    greedy answer is right, and GRPO moves probability onto the right ones."""
    sft_run_dir, _ = default_run
    result = launch.train(_compose(tmp_path, f"model.adapter={sft_run_dir}", "training.run_name=grpo"))
    start, end = result.metrics["base_reward"], result.metrics["eval_reward"]
    steps = [row for row in result.trainer.state.log_history if "frac_reward_zero_std" in row]
    print(f"held-out mean reward (exact match) {start:.3f} -> {end:.3f}, GRPO time {result.metrics['train_runtime']}")
    assert start >= 0.05  # SFT gives GRPO something to reward
    assert any(row["frac_reward_zero_std"] < 1 for row in steps)  # some groups' completions scored differently
    assert end >= start + 0.1
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    from ft.finish import evaluate  # `ft eval` scores a run trained on prompts by their reference answers

    scored = evaluate.evaluate(evaluate.EvalOptions(run_dir=str(result.run_dir), max_examples=16, base=False))
    assert scored["examples"] == 16 and scored["trained"]["loss"] > 0
