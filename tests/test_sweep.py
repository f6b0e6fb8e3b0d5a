"""Sweeps: `ft train -m a=1,2 b=x,y` trains every combination in its own run dir under one sweep dir,
goes on past a failed run, and ends with a table (printed, sweep.md, sweep.csv)."""

import csv

import pytest

from conftest import QUICK, assert_refused, run_ft
from ft.commands import sweep


def test_combinations_are_the_product_of_the_listed_values():
    runs = sweep.combinations(["training.learning_rate=1e-4,3e-4", "logging=none", "peft.r=8,16,32"])
    assert len(runs) == 6
    assert runs[0] == (
        ["training.learning_rate=0.0001", "logging=none", "peft.r=8"],
        ["training.learning_rate=0.0001", "peft.r=8"],
    )
    assert [swept for _, swept in runs][-1] == ["training.learning_rate=0.0003", "peft.r=32"]
    assert len({tuple(combo) for combo, _ in runs}) == 6


def test_a_sweep_with_a_typo_in_any_combination_trains_nothing(tmp_path):
    sweep_args = ["-m", "training.learning_rate=1e-4,3e-4", "peft=lora,dorra"]
    result = run_ft("train", *sweep_args, f"training.output_dir={tmp_path}")
    assert_refused(result.returncode, result.stderr, "unknown peft option 'dorra'", "did you mean 'dora'")
    assert list(tmp_path.iterdir()) == []
    result = run_ft("train", "training.learning_rate=1e-4,3e-4", f"training.output_dir={tmp_path}")
    assert_refused(result.returncode, result.stderr, "lists several values: add -m")


@pytest.mark.slow
def test_a_sweep_runs_every_combination_and_goes_on_past_a_failure(tmp_path):
    missing = "nobody/no-such-model"  # composes, then is refused by the run: offline, no such hub model
    result = run_ft(
        "train",
        "-m",
        "training.learning_rate=1e-3,3e-3",
        f"model.name_or_path=tiny,{missing}",
        *QUICK,
        "training.max_steps=2",
        "training.eval_steps=2",
        "data.synthetic.num_examples=100",
        f"training.output_dir={tmp_path}",
        "training.run_name=lr",
        warm=True,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # not every run succeeded
    sweep_dir = tmp_path / "lr"
    rows = list(csv.DictReader((sweep_dir / sweep.TABLE_CSV).open()))
    assert [row["run"] for row in rows] == ["run-0", "run-1", "run-2", "run-3"]
    assert [row["status"] for row in rows] == ["ok", "failed (exit 2)", "ok", "failed (exit 2)"]
    assert rows[2]["overrides"] == "training.learning_rate=0.003 model.name_or_path=tiny"
    for row in (rows[0], rows[2]):
        assert float(row["eval loss after"]) < float(row["eval loss before"]), row
        assert float(row["train time (s)"]) > 0
        assert (sweep_dir / row["run"] / "adapter_model.safetensors").is_file()
    assert rows[0]["eval loss after"] != rows[2]["eval loss after"]  # the learning rate reached each run
    assert not (sweep_dir / "run-1").exists()  # a refused run leaves nothing but its log
    assert missing in result.stdout and (sweep_dir / "run-1.log").is_file()
    markdown = (sweep_dir / sweep.TABLE_MD).read_text().splitlines()
    assert markdown[0].startswith("| run | overrides | status | eval loss before | eval loss after |")
    assert len(markdown) == 2 + 4
    assert "run-3" in result.stdout.splitlines()[-2]  # the printed table ends the output
