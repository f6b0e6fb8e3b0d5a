"""DPO runs: continued from a checkpoint it equals an uninterrupted run, and the reference model costs no second
copy of the weights (peak memory). Under DDP, DPO is run by tests/test_distributed.py."""

import json
from pathlib import Path

import pytest

from conftest import run_ft
from ft.run import resume
from test_resume import adapter, step_losses

# A short deterministic DPO run: no dropout, a loss logged every step, a checkpoint every 2.
DPO = [
    "recipe=tiny_dpo",
    "training.max_steps=4",
    "training.logging_steps=1",
    "training.save_steps=2",
    "logging=none",
    "data.synthetic.num_examples=200",
    "peft.lora_dropout=0",
    *["training.eval_before_training=false", "training.eval_strategy=no", "data.eval_size=0"],
]


@pytest.mark.slow
def test_dpo_continued_from_its_checkpoint_equals_the_uninterrupted_run(tmp_path):
    """DPO resumes through the session every task shares (ft.training.session), whose exactness tests/test_resume.py
    proves on SFT (kill -9 at four points, SIGTERM). Here, cheaply, that DPO takes that path and that it restores
    what DPO needs: a run started from the uninterrupted run's checkpoint-2 (training.resume=<checkpoint>) ends
    with the same per-step losses and adapter (1e-5)."""
    from ft import config
    from ft.training import launch

    run = [*DPO, f"training.output_dir={tmp_path}"]
    straight = launch.train(config.compose([*run, "training.run_name=straight"])).run_dir
    checkpoint = straight / "checkpoint-2"
    assert resume.incomplete_reason(checkpoint) is None
    resumed = launch.train(config.compose([*run, "training.run_name=resumed", f"training.resume={checkpoint}"])).run_dir
    assert [p.name for p in resume.checkpoints(resumed)] == ["checkpoint-4"]  # it began at step 2, not 0
    expected, actual = step_losses(straight), step_losses(resumed)
    assert sorted(actual) == sorted(expected) == [1, 2, 3, 4]
    worst_loss = max(abs(actual[s] - expected[s]) for s in expected)
    want, got = adapter(straight), adapter(resumed)
    worst_weight = max((got[k] - want[k]).abs().max().item() for k in want)
    print(f"resumed vs uninterrupted DPO: max |loss diff| {worst_loss:.2e}, max |adapter diff| {worst_weight:.2e}")
    assert want.keys() == got.keys() and worst_loss <= 1e-5 and worst_weight <= 1e-5


# A tiny Llama wide enough (about 95M parameters, 380 MB in fp32) that a second copy would stand out of the noise.
WIDE = [
    "model.tiny.hidden_size=1024",
    "model.tiny.intermediate_size=2752",
    "model.tiny.num_hidden_layers=8",
    "model.tiny.num_attention_heads=8",
    "model.tiny.num_key_value_heads=4",
]


@pytest.mark.slow
def test_dpo_reference_adds_no_second_model_to_peak_memory(tmp_path):
    """Peak resident memory of 3 DPO steps (policy and reference passes over chosen and rejected) against 3
    SFT steps on the same base and adapter: with the reference being the base with the adapter switched off,
    DPO's extra peak is activations only, far below one more copy of the weights."""
    quick = [*WIDE, "training.max_steps=3", "training.per_device_train_batch_size=2", "training.logging_steps=1"]
    quick += ["training.save_strategy=no", "logging=none", "data.synthetic.num_examples=100", "data.eval_size=0"]
    quick += ["training.eval_before_training=false", "training.eval_strategy=no", f"training.output_dir={tmp_path}"]
    peaks = {}
    for name in ("sft", "dpo"):
        recipe = "recipe=tiny_dpo" if name == "dpo" else "recipe=default"
        result = run_ft("train", recipe, *quick, f"training.run_name={name}", warm=True)
        assert result.returncode == 0, result.stderr[-3000:]
        history = json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
        peaks[name] = max(row["cpu_peak_rss_gb"] for row in history if "cpu_peak_rss_gb" in row)
    weights_gb = sum(f.stat().st_size for f in _tiny_model_dir(tmp_path).glob("*.safetensors")) / 1e9
    extra = peaks["dpo"] - peaks["sft"]
    print(f"peak RSS: SFT {peaks['sft']:.3f} GB, DPO {peaks['dpo']:.3f} GB (+{extra:.3f}); weights {weights_gb:.3f} GB")
    assert weights_gb > 0.3
    assert extra < 0.5 * weights_gb


def _tiny_model_dir(tmp_path) -> Path:
    from ft import config, models

    return Path(models.resolve_path(config.compose(WIDE).model))
