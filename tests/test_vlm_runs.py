"""task=vlm runs as every task runs: QLoRA trains with the vision tower unquantized, 2 DDP processes give the
losses of 1 process at the doubled batch, and a run resumed from its checkpoint ends where the uninterrupted
run ended."""

import json
import shutil

import bitsandbytes as bnb
import pytest
import torch

from conftest import free_port, run_ft
from ft import config
from ft.tasks.vision_language import models
from ft.training import launch

RUN = [
    "recipe=tiny_vlm_gemma3",
    "data.synthetic.num_examples=60",
    "data.eval_size=0",
    "training.max_steps=4",
    "training.logging_steps=1",
    "training.report_exact_match=false",
    "logging=none",
]


def _losses(run_dir) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [row["loss"] for row in history if "loss" in row]


@pytest.mark.slow
def test_qlora_quantizes_the_language_model_only_and_trains(tmp_path):
    """With bf16 weights and the projector trained in full, on a CPU (fp32 compute, no autocast): the projector's
    trainable copy is fp32 like the vision tower's output that feeds it (it was bf16 and the forward failed)."""
    overrides = ["peft=qlora", "model.dtype=bfloat16", "vision.train_projector=true"]
    cfg = config.compose([*RUN, *overrides, f"training.output_dir={tmp_path}", "training.run_name=q"])
    model = launch.train(cfg).trainer.model
    parts = models.vision_modules(model.get_base_model())
    four_bit = {name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)}
    assert four_bit and not any(parts.in_vision(name.removeprefix("base_model.model.")) for name in four_bit)
    vision = [p for name, p in model.named_parameters() if parts.in_vision(name.removeprefix("base_model.model."))]
    assert vision and all(p.dtype.is_floating_point and p.element_size() == 4 for p in vision)  # not uint8-packed
    projector = [p for name, p in model.named_parameters() if "modules_to_save" in name]
    assert projector and all(p.requires_grad and p.dtype == torch.float32 for p in projector)
    losses = _losses(tmp_path / "q")
    assert losses[-1] < losses[0], losses


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_equals_one_process_with_the_doubled_batch_and_resume_ends_where_the_run_ended(tmp_path):
    out = f"training.output_dir={tmp_path}"
    ddp = run_ft(
        "train",
        *RUN,
        out,
        "training.run_name=ddp",
        "distributed=ddp",
        "distributed.num_processes=2",
        f"distributed.main_process_port={free_port()}",
        "training.per_device_train_batch_size=4",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world size 2" in ddp.stdout
    checkpointed = [*RUN, out, "training.per_device_train_batch_size=8", "training.save_strategy=steps"]
    single = run_ft("train", *checkpointed, "training.save_steps=2", "training.run_name=single", warm=True)
    assert single.returncode == 0, single.stderr[-3000:]
    assert max(abs(a - b) for a, b in zip(_losses(tmp_path / "ddp"), _losses(tmp_path / "single"))) <= 1e-5

    # the run as an interruption after step 2 leaves it: its config and checkpoint-2, nothing else
    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "single" / "config.yaml", tmp_path / "resumed")
    shutil.copytree(tmp_path / "single" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    resumed = run_ft("train", *checkpointed, "training.save_steps=2", "training.run_name=resumed", warm=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "checkpoint-2" in resumed.stdout
    assert _losses(tmp_path / "resumed") == pytest.approx(_losses(tmp_path / "single"), abs=1e-6)
