"""DPO in real processes: two DDP ranks equal one process at the doubled batch, kill -9 and resume equals an
uninterrupted run, and the reference model costs no second copy of the weights (peak memory)."""

import json
from pathlib import Path

import pytest

from conftest import free_port, run_ft
from ft.run import resume
from test_resume import adapter, finish, kill9, loss_lines, start, step_losses, wait_for

# A short deterministic DPO run: no dropout, a loss logged every step.
DPO = [
    "recipe=tiny_dpo",
    "training.max_steps=4",
    "training.logging_steps=1",
    "training.save_strategy=no",
    "logging=none",
    "data.synthetic.num_examples=200",
    "peft.lora_dropout=0",
    *["training.eval_before_training=false", "training.eval_strategy=no", "data.eval_size=0"],
]


def _losses(run_dir: Path) -> list[float]:
    return list(step_losses(run_dir).values())


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_dpo_equals_single_process_with_doubled_batch(tmp_path):
    ddp = run_ft(
        "train",
        *DPO,
        "distributed=ddp",
        "distributed.num_processes=2",
        f"distributed.main_process_port={free_port()}",
        "training.per_device_train_batch_size=4",
        f"training.output_dir={tmp_path}",
        "training.run_name=ddp",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world size 2" in ddp.stdout
    one = ["training.per_device_train_batch_size=8", f"training.output_dir={tmp_path}", "training.run_name=one"]
    single = run_ft("train", *DPO, *one)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_losses, single_losses = _losses(tmp_path / "ddp"), _losses(tmp_path / "one")
    print(f"DPO per-step loss, 2 ranks x 4: {ddp_losses}; 1 process x 8: {single_losses}")
    assert len(ddp_losses) == len(single_losses) == 4
    assert max(abs(a - b) for a, b in zip(ddp_losses, single_losses)) <= 1e-5


@pytest.mark.slow
def test_dpo_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    # test_resume's runs (12 steps, a checkpoint every 2, a loss every step) on the DPO recipe
    dpo = ["recipe=tiny_dpo", "training.eval_before_training=false"]
    straight = tmp_path / "straight"
    straight.mkdir()
    finish(straight, "run", *dpo)
    run_dir = tmp_path / "run"
    proc, log = start(tmp_path, "run", *dpo)
    checkpoint = run_dir / "checkpoint-4"
    wait_for(proc, lambda: loss_lines(log) >= 5 and _complete(checkpoint))
    kill9(proc)
    text = finish(tmp_path, "run", *dpo)
    assert "resuming from" in text and "checkpoint-4" in text
    expected, actual = step_losses(straight / "run"), step_losses(run_dir)
    assert sorted(actual) == sorted(expected) == list(range(1, 13))
    worst_loss = max(abs(actual[s] - expected[s]) for s in expected)
    want, got = adapter(straight / "run"), adapter(run_dir)
    worst_weight = max((got[k] - want[k]).abs().max().item() for k in want)
    print(f"resumed vs uninterrupted DPO: max |loss diff| {worst_loss:.2e}, max |adapter diff| {worst_weight:.2e}")
    assert want.keys() == got.keys() and worst_loss <= 1e-5 and worst_weight <= 1e-5


def _complete(checkpoint: Path) -> bool:
    return checkpoint.is_dir() and resume.incomplete_reason(checkpoint) is None


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
        result = run_ft("train", recipe, *quick, f"training.run_name={name}")
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
