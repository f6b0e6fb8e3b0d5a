"""The benchmarks in bench/ are run by `make bench`, not by the suite. Here: the GPU benchmark's script starts
and refuses a CPU unless told to use tiny shapes, and the TRL baseline of bench/overhead.py does the same
training as ft's default recipe."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ft import config, data, models
from ft.data import detect
from ft.models import adapters
from ft.run.hardware import Hardware
from ft.tasks import sft

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_bench_refuses_a_cpu_without_the_tiny_flag():
    result = subprocess.run([sys.executable, str(BENCH / "gpu.py")], capture_output=True, text=True, cwd=BENCH)
    assert result.returncode != 0 and "--tiny" in result.stderr


def _baseline():
    spec = importlib.util.spec_from_file_location("baseline_trl", BENCH / "baseline_trl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What only ft does around the training itself (evals, checkpoints, trackers, its run dir, token counts):
# the baseline leaves these at TRL's defaults or off.
NOT_TRAINING = {
    "do_eval",
    "eval_on_start",
    "eval_steps",
    "eval_strategy",
    "per_device_eval_batch_size",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "report_to",
    "run_name",
    "logging_first_step",
    "include_num_input_tokens_seen",
}


def test_trl_baseline_trains_with_the_default_recipes_settings(tmp_path):
    """bench/overhead.py compares ft with bench/baseline_trl.py: both must do the same work, so every
    SFTConfig and LoraConfig value of the baseline equals what ft builds from the same resolved config
    (the default recipe, plus the bench's overrides), and so do the data rows and the model files."""
    baseline = _baseline()
    overrides = ["training.max_steps=60", "training.eval_strategy=no", "training.save_strategy=no", "logging=none"]
    cfg = baseline.settings(overrides)
    ft_cfg = config.compose(overrides)
    ft_cfg = detect.resolved(ft_cfg)  # as `ft train` does before it builds the trainer
    cpu = Hardware("cpu", False, 0)

    theirs = baseline.sft_config(cfg, tmp_path).to_dict()
    ours = sft.sft_config(ft_cfg, cpu, tmp_path, has_eval=True).to_dict()
    assert set(theirs) == set(ours)
    differing = {key: (theirs[key], ours[key]) for key in ours if theirs[key] != ours[key]}
    assert set(differing) <= NOT_TRAINING, differing
    # the recipe's own values, not TRL's or the schema's defaults
    assert theirs["per_device_train_batch_size"] == 64 and theirs["learning_rate"] == 3e-3
    assert theirs["max_steps"] == 60 and theirs["max_length"] == 128 and theirs["assistant_only_loss"] is True

    lora = baseline.lora_config(cfg).to_dict()
    assert lora == adapters.build_peft_config(ft_cfg.peft, None, 60).to_dict()
    assert lora["lora_dropout"] == 0.0 and lora["modules_to_save"] == ["lm_head"]

    train, _ = data.load(ft_cfg.data)
    assert baseline.datasets(cfg)["train"].to_list() == train.to_list()
    assert len(train) == 7600  # 8000 examples of the recipe's three tasks, 5% held out
    assert baseline.model_path(cfg) == models.resolve_path(ft_cfg.model)


@pytest.mark.parametrize(
    "overrides, refusal",
    [(["recipe=tiny_dpo"], "SFT on the synthetic tasks"), (["peft=dora"], "plain LoRA"), (["training.max_step=1"], "")],
)
def test_trl_baseline_refuses_what_it_does_not_mirror_without_a_traceback(tmp_path, overrides, refusal):
    result = subprocess.run(
        [sys.executable, str(BENCH / "baseline_trl.py"), str(tmp_path), *overrides], capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.startswith("baseline_trl: ") and refusal in result.stderr
