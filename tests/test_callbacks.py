"""ft's callbacks through the real CLI: sample generations, throughput + memory, early stopping; and
the W&B logging option offline."""

import json
import os
import subprocess
import sys

import pytest

from conftest import QUICK, run_ft

pytestmark = pytest.mark.slow

MAX_STEPS = 30


@pytest.fixture(scope="module")
def stalled_run(tmp_path_factory):
    """A run whose eval loss cannot improve (learning rate 1e-8), with every callback on."""
    out = tmp_path_factory.mktemp("runs")
    result = run_ft(
        "train",
        f"training.output_dir={out}",
        "training.run_name=stalled",
        "data.synthetic.num_examples=200",
        f"training.max_steps={MAX_STEPS}",
        "training.eval_steps=2",
        "training.logging_steps=1",
        "training.learning_rate=1e-8",
        "callbacks.sample_prompts=[What is 2 + 3?,Reverse the letters: abc]",
        "callbacks.sample_max_new_tokens=8",
        "callbacks.early_stopping_patience=2",
        "callbacks.early_stopping_threshold=0.01",
        warm=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "stalled", result


def test_early_stopping_stops_a_stalled_run(stalled_run):
    run_dir, _ = stalled_run
    state = json.loads((run_dir / "trainer_state.json").read_text())
    # evals at steps 2 (best), 4 and 6 (no improvement > 0.01): patience 2 is used up at step 6
    assert state["global_step"] == 6 < MAX_STEPS
    assert state["best_metric"] is not None


def test_sample_generations_are_written(stalled_run):
    run_dir, result = stalled_run
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows} >= {0, 2, 4, 6}  # before training and at every evaluation
    assert {r["prompt"] for r in rows} == {"What is 2 + 3?", "Reverse the letters: abc"}
    assert all(r["completion"] for r in rows)
    assert "ft: sample @ step 2: 'What is 2 + 3?' -> " in result.stdout
    events = b"".join(p.read_bytes() for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert b"samples" in events and b"What is 2 + 3?" in events  # TensorBoard text


def test_throughput_and_memory_are_in_the_trainer_logs(stalled_run):
    run_dir, _ = stalled_run
    logs = [row for row in json.loads((run_dir / "trainer_state.json").read_text())["log_history"] if "loss" in row]
    assert len(logs) == 6
    for row in logs:
        assert row["tokens_per_second"] > 0 and row["num_input_tokens_seen"] > 0
        assert 0.05 < row["cpu_rss_gb"] <= row["cpu_peak_rss_gb"] + 1e-3
    events = b"".join(p.read_bytes() for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert b"tokens_per_second" in events  # the reporting callbacks saw the numbers too


def test_the_peak_memory_of_a_process_is_its_own_not_its_parents():
    """getrusage's ru_maxrss survives fork and exec: a run started by a 1 GiB parent reported 1 GiB before
    it held anything. The peak ft reports is the started program's own."""
    held = bytearray(2**30)
    held[::4096] = b"\1" * len(range(0, 2**30, 4096))  # resident, page by page
    child = "from ft.run import hardware; print(hardware.peak_resident_gib())"
    peak = float(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
    assert 0 < peak < 0.25, peak


def test_wandb_offline_run_is_written(tmp_path):
    assert os.environ.get("WANDB_MODE") == "offline"  # conftest
    result = run_ft(
        "train",
        *[o for o in QUICK if o != "logging=none"],
        "logging=wandb",
        f"training.output_dir={tmp_path}",
        "training.run_name=wb",
        warm=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb")), "an offline W&B run to `wandb sync` later"


def test_mlflow_run_is_logged_in_the_run_dir(tmp_path, monkeypatch):
    result = run_ft(
        "train",
        *[o for o in QUICK if o != "logging=none"],
        "logging=mlflow",
        f"training.output_dir={tmp_path}",
        "training.run_name=mlf",
        warm=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # read the store ft wrote
    mlflow.set_tracking_uri((tmp_path / "mlf" / "mlruns").resolve().as_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert any("loss" in run.data.metrics for run in runs)  # the training losses, logged by MLflow
