"""End to end through the real training path: the CLI in a subprocess, and the same composition
in-process where the test needs the trained model object."""

import json

import pytest
import torch

from conftest import QUICK, assert_refused, run_ft
from ft import config
from ft.training.launch import train

pytestmark = pytest.mark.slow
DEFAULT_EXACT_MATCH = 0.3  # bench/RESULTS.md: the default recipe measured 0.42


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = config.compose([*QUICK, f"training.output_dir={out}", "training.run_name=quick"])
    return train(cfg)


def test_run_dir_has_every_output(quick_run):
    run_dir = quick_run.run_dir
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
    assert state["global_step"] == 5
    assert not [p for p in run_dir.glob("*.bin") if p.name != "training_args.bin"], "weights are safetensors only"


def test_saved_adapter_reloads_to_the_same_logits(quick_run, tiny_model_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trained = quick_run.trainer.model.eval()
    tokenizer = quick_run.trainer.processing_class
    batch = tokenizer(["What is 12 + 30?", "Reverse the letters: abc"], return_tensors="pt", padding=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, quick_run.run_dir).eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        actual = reloaded(**batch).logits
    assert (actual - expected).abs().max().item() <= 1e-6
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "the adapter was trained"


def test_the_eval_at_the_last_step_is_not_run_again(quick_run):
    """eval_steps=5 of 5 steps: the trainer evaluated the final model at step 5, and the final metrics are
    that eval's, not a second identical pass (the default recipe evaluates at 100 and 200 of 200 steps)."""
    evals = [row for row in quick_run.trainer.state.log_history if "eval_runtime" in row]
    assert [row["step"] for row in evals] == [0, 5]  # the untrained eval and the one at the last step
    assert quick_run.metrics["eval_loss"] == evals[-1]["eval_loss"]
    saved = json.loads((quick_run.run_dir / "eval_results.json").read_text())
    assert saved["eval_loss"] == evals[-1]["eval_loss"]


def test_the_exact_match_report_can_be_turned_off(quick_run, capsys):
    from ft.finish import answers

    assert {"exact_match", "base_exact_match"} <= set(quick_run.metrics)  # on by default
    off = config.compose([*QUICK, "training.report_exact_match=false"])
    assert answers.report(off, quick_run.trainer) == {}
    assert "exact match" not in capsys.readouterr().out


def test_cli_train_writes_a_run_and_reports_losses(tmp_path):
    result = run_ft("train", *QUICK, f"training.output_dir={tmp_path}", "training.run_name=cli")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ft: run directory {tmp_path / 'cli'}" in result.stdout
    assert "(untrained)" in result.stdout and "(trained)" in result.stdout
    assert (tmp_path / "cli" / "adapter_model.safetensors").is_file()


def test_existing_run_dir_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = run_ft("train", *QUICK, f"training.output_dir={tmp_path}", "training.run_name=taken")
    assert_refused(result.returncode, result.stderr, "already exists")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_tensorboard_logs_are_written(tmp_path):
    result = run_ft(
        "train", *[o for o in QUICK if o != "logging=none"], f"training.output_dir={tmp_path}", "training.run_name=tb"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))


def test_default_recipe_learns(tmp_path):
    """The acceptance bar of `make train`: eval loss ends at <= 0.6x the untrained model's, and the trained
    model answers held-out synthetic prompts (exact match, printed before/after with sample answers)."""
    # ~2 min on a quiet 2-core machine; a shared one can take 5x that
    result = run_ft(
        "train", f"training.output_dir={tmp_path}", "training.run_name=default", "logging=none", timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "default" / "all_results.json").read_text())
    assert metrics["eval_loss"] <= 0.6 * metrics["base_loss"], metrics
    assert metrics["exact_match"] >= DEFAULT_EXACT_MATCH > metrics["base_exact_match"], metrics
    lines = result.stdout.splitlines()
    report = next(i for i, line in enumerate(lines) if line.startswith("ft: exact match on 100 held-out prompts"))
    assert f"-> {100 * metrics['exact_match']:.1f}% (trained)" in lines[report]
    assert len([line for line in lines[report + 1 :] if line.startswith("ft:   '")]) == 3  # sample answers
