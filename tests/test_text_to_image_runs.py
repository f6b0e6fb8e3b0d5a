"""task=text_to_image runs beyond the basic one: SDXL, DreamBooth with prior preservation, SIGTERM and
resume, two processes (DDP). Each drives the real CLI in a subprocess on the offline tiny pipelines."""

import json
import signal
import time
from pathlib import Path

import pytest

from conftest import free_port, run_ft, start_ft
from ft.run import rundir

QUICK = ["logging=none", "diffusion.num_inference_steps=2"]


def lora(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / rundir.LORA_WEIGHTS)


def step_losses(run_dir: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in json.loads((run_dir / "trainer_state.json").read_text())["log_history"]}


@pytest.mark.slow
def test_sdxl_lora_with_8bit_adam_and_checkpointing_trains_and_reloads_into_a_fresh_sdxl_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    from ft.tasks.text_to_image import pipeline as diffusion

    # with the sdxl_dreambooth_lora recipe's memory savers: 8-bit Adam and activation checkpointing
    memory = ["optim=adamw_8bit", "training.activation_checkpointing=true", "diffusion.train_text_encoder=true"]
    done = run_ft(
        "train",
        "recipe=tiny_sdxl_lora",
        "training.max_steps=4",
        *memory,
        *QUICK,
        f"training.output_dir={tmp_path}",
        warm=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    weights = lora(run_dir)
    assert {key.split(".")[0] for key in weights} == {"unet", "text_encoder", "text_encoder_2"}
    trained = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    assert len(trained) == 4 and all(row["loss"] > 0 for row in trained)
    pipe = DiffusionPipeline.from_pretrained(diffusion.resolve_path("tiny-sdxl"))
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    models = {"unet": pipe.unet, "text_encoder": pipe.text_encoder, "text_encoder_2": pipe.text_encoder_2}
    pipe.load_lora_weights(str(run_dir))
    for prefix, model in models.items():
        saved = {key for key in weights if key.startswith(prefix + ".")}
        loaded = [p for name, p in model.named_parameters() if "lora" in name]
        assert len(loaded) == len(saved) > 0, prefix
    # the text encoders' LoRA trained: their B ("up", initialized to zero) matrices moved
    for prefix in ("text_encoder.", "text_encoder_2."):
        ups = [weights[k] for k in weights if k.startswith(prefix) and k.endswith(".up.weight")]
        assert ups and any(up.abs().max() > 0 for up in ups), prefix


@pytest.mark.slow
def test_dreambooth_with_prior_preservation_renders_class_images_and_trains(tmp_path):
    done = run_ft(
        "train",
        "recipe=tiny_sdxl_dreambooth_lora",
        "training.max_steps=3",
        *QUICK,
        f"training.output_dir={tmp_path}",
        warm=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    assert len(list((run_dir / "class_images").glob("*.png"))) == 8
    assert (run_dir / rundir.LORA_WEIGHTS).is_file()
    card = (run_dir / "README.md").read_text()
    assert "Trigger prompt: `a photo of sks shape`" in card and "dreambooth" in card
    # the batch is 4 instance + 4 class images: the loss is their two means added, ~2x a plain run's ~1.1
    assert all(1.5 < loss < 3.0 for loss in step_losses(run_dir).values())


RESUMABLE = [
    "recipe=tiny_sd_lora",
    "training.max_steps=8",
    "training.save_strategy=steps",
    "training.save_steps=2",
    "training.logging_steps=1",
    "diffusion.random_flip=true",
    *QUICK,
]


@pytest.mark.slow
def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Stopped by SIGTERM after step 6 (preemption: it checkpoints the step it finishes and exits 0), then
    resumed: per-step losses and the final LoRA equal an uninterrupted run's. The checkpoint restores LoRA,
    optimizer, LR schedule and RNG states (noise, timesteps, crops, flips), and each epoch's batch order
    depends on (seed, epoch) alone. The task's own loop does this; which checkpoint a run continues (the
    newest complete one, after a kill -9 too) is the shared session's, proven in tests/test_resume.py."""
    straight = run_ft("train", *RESUMABLE, f"training.output_dir={tmp_path}", "training.run_name=straight", warm=True)
    assert straight.returncode == 0, straight.stderr[-3000:]

    log = tmp_path / "stopped.log"
    proc = start_ft("train", *RESUMABLE, f"training.output_dir={tmp_path}", "training.run_name=stopped", log=log)
    deadline = time.monotonic() + 600
    while "ft: step 6/8" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    stopped = [line for line in log.read_text().splitlines() if line.startswith("ft: stopped by SIGTERM at step")]
    assert stopped and "to resume: " in stopped[0], log.read_text()[-3000:]
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert 6 <= step < 8 and (tmp_path / "stopped" / f"checkpoint-{step}" / "trainer_state.json").is_file()
    assert not (tmp_path / "stopped" / rundir.LORA_WEIGHTS).exists()

    resumed = run_ft("train", *RESUMABLE, f"training.output_dir={tmp_path}", "training.run_name=stopped", warm=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {tmp_path / 'stopped' / f'checkpoint-{step}'}" in resumed.stdout
    expected, got = step_losses(tmp_path / "straight"), step_losses(tmp_path / "stopped")
    assert sorted(got) == list(range(1, 9))
    assert all(abs(got[step] - expected[step]) <= 1e-6 for step in expected), (expected, got)
    a, b = lora(tmp_path / "straight"), lora(tmp_path / "stopped")
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() <= 1e-6 for k in a)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_train_one_lora(tmp_path):
    """On images of 3 aspect ratios (.txt captions), so that Accelerate shards the bucketed batch order
    (which groups one bucket per step for all processes: test_text_to_image_data checks the grouping)."""
    from PIL import Image

    folder = tmp_path / "shapes"
    folder.mkdir()
    for i, (h, w) in enumerate([(24, 24), (18, 30), (30, 18)] * 3):
        Image.effect_noise((w, h), 30 + 5 * i).convert("RGB").save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"noise {i}")
    done = run_ft(
        "train",
        "recipe=tiny_sd_lora",
        f"data.source={folder}",
        "training.per_device_train_batch_size=2",
        "training.max_steps=4",
        "distributed=ddp",
        "distributed.num_processes=2",
        f"distributed.main_process_port={free_port()}",
        *QUICK,
        f"training.output_dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and p != folder]
    assert "on 2 process(es)" in done.stdout  # not just an exit code: accelerate can silently start one
    assert done.stdout.count("ft: bucket ") == 3
    assert len(step_losses(run_dir)) == 4 and "2 process(es)" in (run_dir / "README.md").read_text()
