"""End to end through the real training path: the CLI in a subprocess (conftest's `cli_run`), and the same
composition in-process where the test needs the trained model object (conftest's `finished`)."""

import json

import pytest
import torch

from conftest import FINISHED_STEPS, QUICK
from ft import config

pytestmark = pytest.mark.slow
DEFAULT_EXACT_MATCH = 0.3  # bench/RESULTS.md: the default recipe measured 0.42


def test_run_dir_has_every_output(finished):
    run_dir = finished.run_dir
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.yaml",
        "trainer_state.json",
        "all_results.json",
        "loss.png",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "adapter_model.safetensors").stat().st_size > 10_000
    state = json.loads((run_dir / "trainer_state.json").read_text())
    assert state["global_step"] == FINISHED_STEPS
    assert not [p for p in run_dir.glob("*.bin") if p.name != "training_args.bin"], "weights are safetensors only"


def test_the_run_reports_its_peak_memory(finished, cli_run):
    """Peak memory of the run in all_results.json, the card and the summary: on a CPU the process's resident
    high-water mark, at least what the throughput logs saw during training."""
    metrics = json.loads((finished.run_dir / "all_results.json").read_text())
    logged = [row["cpu_peak_rss_gb"] for row in finished.trainer.state.log_history if "cpu_peak_rss_gb" in row]
    assert logged and max(logged) <= metrics["cpu_peak_rss_gb"] < 24, (logged, metrics)
    card = (finished.run_dir / "README.md").read_text()
    assert f"peak memory {metrics['cpu_peak_rss_gb']:.2f} GiB (resident memory, per process)" in card
    _, result = cli_run
    assert "ft: peak memory " in result.stdout and "GiB (resident memory, per process)" in result.stdout


def test_saved_adapter_reloads_to_the_same_logits(finished, tiny_model_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trained = finished.trainer.model.eval()
    tokenizer = finished.trainer.processing_class
    batch = tokenizer(["What is 12 + 30?", "Reverse the letters: abc"], return_tensors="pt", padding=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, finished.run_dir).eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        actual = reloaded(**batch).logits
    assert (actual - expected).abs().max().item() <= 1e-6
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "the adapter was trained"


def test_the_eval_at_the_last_step_is_not_run_again(finished):
    """eval_steps=40 of 40 steps: the trainer evaluated the final model at step 40, and the final metrics are
    that eval's, not a second identical pass (the default recipe evaluates at 100 and 200 of 200 steps)."""
    evals = [row for row in finished.trainer.state.log_history if "eval_runtime" in row]
    assert [row["step"] for row in evals] == [0, FINISHED_STEPS]  # the untrained eval and the last step's
    assert finished.metrics["eval_loss"] == evals[-1]["eval_loss"]
    saved = json.loads((finished.run_dir / "eval_results.json").read_text())
    assert saved["eval_loss"] == evals[-1]["eval_loss"]


def test_the_exact_match_report_can_be_turned_off(finished, capsys):
    from ft.finish import answers

    assert {"exact_match", "base_exact_match"} <= set(finished.metrics)  # on by default
    off = config.compose([*QUICK, "training.report_exact_match=false"])
    assert answers.report(off, finished.trainer) == {}
    assert "exact match" not in capsys.readouterr().out


def test_cli_train_writes_a_run_and_reports_losses(cli_run):
    out, result = cli_run
    assert f"ft: run directory {out / 'cli'}" in result.stdout
    assert "(untrained)" in result.stdout and "(trained)" in result.stdout
    assert (out / "cli" / "adapter_model.safetensors").is_file()


def test_tensorboard_logs_are_written(cli_run):
    out, _ = cli_run
    assert list((out / "cli" / "tensorboard").glob("events.out.tfevents.*"))


def test_default_recipe_learns(default_run):
    """The acceptance bar of `make train`: eval loss ends at <= 0.6x the untrained model's, and the trained
    model answers held-out synthetic prompts (exact match, printed before/after with sample answers)."""
    run_dir, result = default_run
    metrics = json.loads((run_dir / "all_results.json").read_text())
    assert metrics["eval_loss"] <= 0.6 * metrics["base_loss"], metrics
    assert metrics["exact_match"] >= DEFAULT_EXACT_MATCH > metrics["base_exact_match"], metrics
    lines = result.stdout.splitlines()
    report = next(i for i, line in enumerate(lines) if line.startswith("ft: exact match on 100 held-out prompts"))
    assert f"-> {100 * metrics['exact_match']:.1f}% (trained)" in lines[report]
    assert len([line for line in lines[report + 1 :] if line.startswith("ft:   '")]) == 3  # sample answers
