"""task=text_to_image on the offline tiny pipelines: the LoRA learns, is saved in diffusers' format,
reloads into a fresh pipeline with `load_lora_weights`, and the real recipes validate without loading."""

import json

import pytest

from ft import config
from ft.run import rundir
from ft.tasks.text_to_image import images
from ft.tasks.text_to_image import pipeline as diffusion
from ft.tasks.text_to_image import render as diffusion_render
from ft.training import launch

TRAIN = [
    "recipe=tiny_sd_lora",
    "logging=tensorboard",
    "training.max_steps=24",
    "diffusion.validation_prompts=[a red circle on a blue background]",
    "diffusion.validation_steps=12",
]


def fixed_set_loss(cfg, lora_dir=None, n: int = 32) -> float:
    """Mean diffusion loss of the base (or base + the run's LoRA) on a fixed set: 32 synthetic images not
    trained on (seed 999), with timesteps, noise and VAE samples drawn from one seeded generator."""
    import torch
    from diffusers import DiffusionPipeline

    path = diffusion.resolve_path(cfg.model.name_or_path)
    pipe = DiffusionPipeline.from_pretrained(path)
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir))
    parts = diffusion.parts_from_pipeline(pipe, path)
    examples = images.synthetic(n, cfg.diffusion.resolution, seed=999)
    res = cfg.diffusion.resolution
    pixels = torch.stack([images.to_tensor(e.image, res, True, False)["pixel_values"] for e in examples])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        latents = diffusion.latents_of(parts, pixels, generator)
        embeds, _ = diffusion.encode_prompts(parts, [e.caption for e in examples], "cpu")
        loss = diffusion.diffusion_loss(parts, parts.unet, latents, embeds, None, cfg.diffusion, generator=generator)
    return loss.item()


def render_array(pipe, prompt: str = "a green square on a white background"):
    import torch

    generator = torch.Generator().manual_seed(7)
    return pipe(prompt, height=16, width=16, num_inference_steps=4, generator=generator, output_type="np").images[0]


@pytest.fixture(scope="module")
def sd_run(tmp_path_factory):

    out = tmp_path_factory.mktemp("runs")
    cfg = config.compose([*TRAIN, f"training.output_dir={out}", "training.run_name=sd"])
    return cfg, launch.train(cfg)


@pytest.mark.slow
def test_lora_lowers_the_loss_on_a_fixed_set(sd_run):
    """Measured: 1.1356 -> 1.0254 (-9.7%) after the 24 steps here; at a learning rate 100x lower, 1.1356 ->
    1.1346 (-0.09%). The set, its noise and its timesteps are fixed, so the difference is no sampling noise,
    and the LoRA starts as an exact no-op (B = 0): what moves is learned. Requiring -4% fails a run that does
    not learn while leaving room for rounding differences between machines and thread counts."""
    cfg, result = sd_run
    base, trained = fixed_set_loss(cfg), fixed_set_loss(cfg, result.run_dir)
    print(f"fixed-set loss {base:.4f} (base) -> {trained:.4f} (trained), ratio {trained / base:.3f}")
    assert trained < 0.96 * base, (base, trained)


@pytest.mark.slow
def test_saved_lora_reloads_into_a_fresh_pipeline(sd_run):
    import numpy as np
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    cfg, result = sd_run
    run_dir, job = result.run_dir, result.trainer
    with safe_open(str(run_dir / rundir.LORA_WEIGHTS), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("unet.") and ".lora." in k for k in keys), keys[:3]

    unet = job.acc.unwrap_model(job.models[0]).eval()
    trained = render_array(diffusion_render.pipeline_from_parts(job.parts, unet, job.parts.text_encoders, job.dtype))
    path = diffusion.resolve_path(cfg.model.name_or_path)
    base = render_array(DiffusionPipeline.from_pretrained(path))
    fresh = DiffusionPipeline.from_pretrained(path)
    fresh.load_lora_weights(str(run_dir))
    reloaded = render_array(fresh)
    assert np.abs(reloaded - trained).max() <= 1e-5
    assert np.abs(reloaded - base).max() > 1e-3


@pytest.mark.slow
def test_run_dir_has_samples_card_and_a_usage_snippet_that_runs(sd_run, tmp_path, monkeypatch):
    cfg, result = sd_run
    run_dir = result.run_dir
    assert sorted(p.name for p in (run_dir / diffusion_render.SAMPLES).iterdir()) == ["step-12-0.png", "step-24-0.png"]
    assert (run_dir / diffusion_render.GRID).is_file() and (run_dir / "loss.png").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = [p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")]
    logged = EventAccumulator(str(events)).Reload()
    assert [e.step for e in logged.Images("validation")] == [12, 24]
    assert len(logged.Scalars("train/loss")) == 24
    state = json.loads((run_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 24 and len(state["log_history"]) == 24
    card = (run_dir / "README.md").read_text()
    assert "pipeline_tag: text-to-image" in card and "![samples](samples.png)" in card
    assert "peak memory " in card and result.metrics["cpu_peak_rss_gb"] > 0
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "load_lora_weights" in snippet
    from ft.finish import card as cards
    from ft.finish import hub

    assert 'adapter = "my/lora"' in cards.point_at_repo(card, "my/lora")
    uploaded = {p.name for p in hub.files_to_upload(run_dir)}
    assert {rundir.LORA_WEIGHTS, "samples.png", "README.md", "config.yaml", "loss.png"} <= uploaded
    assert not {"trainer_state.json", "train_results.json"} & uploaded
    monkeypatch.chdir(tmp_path)
    exec(snippet.replace("num_inference_steps=10", "num_inference_steps=2"), {})
    assert (tmp_path / "sample.png").is_file()


@pytest.mark.parametrize(
    "recipe, expected",
    [
        (
            "sd15_lora",
            {"model.name_or_path": "stable-diffusion-v1-5/stable-diffusion-v1-5", "diffusion.resolution": 512},
        ),
        (
            "sd21_lora",
            {
                "diffusion.prediction_type": "v_prediction",
                "diffusion.resolution": 768,
                "training.per_device_train_batch_size": 4,
                "training.learning_rate": 2.4e-4,
                "training.lr_scheduler_type": "constant",
                "training.precision": "fp16",
                "diffusion.center_crop": True,
                "diffusion.random_flip": True,
            },
        ),
        (
            "sdxl_dreambooth_lora",
            {
                "optim.name": "adamw_bnb_8bit",
                "training.precision": "fp16",
                "training.activation_checkpointing": True,
                "diffusion.resolution": 1024,
            },
        ),
    ],
)
def test_real_recipes_validate_without_loading(recipe, expected):
    cfg = config.compose([f"recipe={recipe}"])
    assert cfg.task == "text_to_image"
    for key, value in expected.items():
        section, _, name = key.rpartition(".")
        node = cfg
        for part in section.split("."):
            node = getattr(node, part)
        assert getattr(node, name) == value, key


def test_an_fsdp_launch_of_the_users_own_is_refused_before_training(monkeypatch):
    """Tried on 2 CPU processes through the FSDP test shim: the loop trained, then failed to save a LoRA of
    sharded weights (a traceback after the whole run). Now refused at the start, in every process."""
    from ft.errors import FtError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # as accelerate launch sets it from an FSDP config
    with pytest.raises(FtError, match="task=text_to_image under FSDP"):
        config.compose(["recipe=tiny_sd_lora"])


@pytest.mark.slow
def test_generate_writes_a_png_with_the_runs_lora(sd_run, tmp_path):
    from PIL import Image

    from ft import cli

    _, result = sd_run
    out = tmp_path / "out.png"
    assert cli.main(["generate", f"run_dir={result.run_dir}", "prompt=a red circle", f"image={out}"]) == 0
    with Image.open(out) as image:
        assert image.size == (16, 16)
