"""task=text_to_image on the flow-matching models, Flux.1 and SD3, with the offline tiny pipelines (tiny-flux,
tiny-flux-schnell, tiny-sd3): the objective's pieces, the rules, the real recipes without loading, and runs
whose LoRA learns, reloads into a fresh pipeline with diffusers' `load_lora_weights` and resumes exactly."""

import json
import signal
import time

import pytest

from conftest import run_ft, start_ft
from ft import config
from ft.errors import FtError
from ft.run import rundir
from ft.tasks.text_to_image import flow, images
from ft.tasks.text_to_image import pipeline as diffusion
from ft.tasks.text_to_image import render as diffusion_render
from ft.training import launch
from test_text_to_image_runs import QUICK, lora, step_losses

FLUX_TRAIN = [
    "recipe=tiny_flux_lora",
    "training.max_steps=24",
    "diffusion.cache_text_embeddings=true",
    "diffusion.validation_prompts=[a red circle on a blue background]",
    "diffusion.validation_steps=12",
    "diffusion.num_inference_steps=2",
]


def fresh_pipeline(name: str, lora_dir=None):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(diffusion.resolve_path(name))
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fixed_set_loss(cfg, lora_dir=None, n: int = 32) -> float:
    """Mean flow-matching loss of the base (or base + the run's LoRA) on 32 synthetic images not trained on
    (seed 999), noise, noise levels and VAE samples drawn from one seeded generator."""
    import torch

    pipe = fresh_pipeline(cfg.model.name_or_path, lora_dir)
    parts = diffusion.parts_from_pipeline(pipe, cfg.model.name_or_path, cfg.diffusion)
    res = cfg.diffusion.resolution
    examples = images.synthetic(n, res, seed=999)
    pixels = torch.stack([images.to_tensor(e.image, res, True, False)["pixel_values"] for e in examples])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        latents = diffusion.latents_of(parts, pixels, generator)
        embeds, pooled = diffusion.encode_prompts(parts, [e.caption for e in examples], "cpu")
        loss = flow.flow_loss(parts, parts.transformer, latents, embeds, pooled, cfg.diffusion, generator=generator)
    return loss.item()


def render_array(pipe, prompt: str = "a green square on a white background"):
    import torch

    generator = torch.Generator().manual_seed(7)
    return pipe(
        prompt,
        height=16,
        width=16,
        num_inference_steps=3,
        max_sequence_length=16,
        generator=generator,
        output_type="np",
    ).images[0]


# -- the objective's pieces, on the tiny pipelines' real parts


@pytest.fixture(scope="module")
def flux_parts():
    cfg = config.compose(["recipe=tiny_flux_lora"])
    return cfg, diffusion.parts_from_pipeline(fresh_pipeline("tiny-flux"), "tiny-flux", cfg.diffusion)


def test_flow_parts_know_their_layout_and_size_factor(flux_parts):
    _, parts = flux_parts
    assert parts.flux and parts.flux_guidance == 1.0 and parts.size_factor == 4  # VAE /2, Flux's 2x2 packing
    sd3 = config.compose(["recipe=tiny_sd3_lora"])
    sd3_parts = diffusion.parts_from_pipeline(fresh_pipeline("tiny-sd3"), "tiny-sd3", sd3.diffusion)
    assert not sd3_parts.flux and sd3_parts.flux_guidance is None and sd3_parts.size_factor == 4  # VAE /2, patch 2
    assert len(sd3_parts.trainable_text_encoders) == 2 and len(parts.trainable_text_encoders) == 1  # CLIPs, not T5
    # SD3's sequence: both CLIPs' states padded to T5's width, then T5's tokens
    embeds, pooled = diffusion.encode_prompts(sd3_parts, ["a red circle", "a dog"], "cpu")
    assert embeds.shape == (2, 32 + 16, 64) and pooled.shape == (2, 64)
    flux_embeds, flux_pooled = diffusion.encode_prompts(parts, ["a red circle"], "cpu")
    assert flux_embeds.shape == (1, 16, 64) and flux_pooled.shape == (1, 32)


def test_flow_loss_takes_non_square_batches_and_a_mask(flux_parts):
    """Buckets give h != w: Flux's packing and image ids follow the batch's own shape. A mask of ones is no
    mask; a constant mask changes nothing (it normalizes); a mask on part of the latents is that part's loss."""
    import torch

    cfg, parts = flux_parts
    latents = torch.randn(2, 4, 6, 10, generator=torch.Generator().manual_seed(1))
    embeds, pooled = diffusion.encode_prompts(parts, ["a red circle", "a blue square"], "cpu")

    def loss(mask=None, scheme="none"):
        d = config.compose(["recipe=tiny_flux_lora", f"diffusion.weighting_scheme={scheme}"]).diffusion
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return flow.flow_loss(parts, parts.transformer, latents, embeds, pooled, d, g, per_example=True, mask=mask)

    plain = loss()
    assert plain.shape == (2,) and torch.isfinite(plain).all()
    assert torch.allclose(loss(torch.ones(2, 1, 6, 10)), plain, atol=1e-6)
    assert torch.allclose(loss(torch.full((2, 1, 6, 10), 0.25)), plain, atol=1e-6)
    left = torch.zeros(2, 1, 6, 10)
    left[..., :5] = 1
    assert not torch.allclose(loss(left), plain, atol=1e-4)
    for scheme in ("sigma_sqrt", "logit_normal", "mode", "cosmap"):
        assert torch.isfinite(loss(scheme=scheme)).all(), scheme


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["recipe=tiny_flux_lora", "diffusion.snr_gamma=5"], "tiny-flux is trained with flow matching"),
        (["recipe=tiny_sd3_lora", "diffusion.prediction_type=epsilon"], "tiny-sd3 is trained with flow matching"),
        (["recipe=tiny_sd3_lora", "diffusion.flux_guidance=3.5"], "tiny-sd3 has no guidance embedding"),
        (["recipe=tiny_sdxl_lora", "diffusion.max_sequence_length=77"], "an option of flow-matching models"),
        (["recipe=tiny_sd_lora", "peft=qlora"], "a 4-bit base only for a Flux / SD3 transformer"),
        (["recipe=tiny_flux_lora", "peft.target_modules=all-linear"], "names no transformer layers"),
    ],
)
def test_rules_refuse_what_the_objective_cannot_do(overrides, message):
    with pytest.raises(FtError, match=message):
        config.compose(overrides)


def test_family_is_known_before_loading():
    assert flow.family("tiny-flux") == flow.FLUX and flow.family("tiny-sd3") == flow.SD3
    assert flow.family("tiny-sd") is None and flow.family("tiny-sdxl") is None
    assert flow.family("black-forest-labs/FLUX.1-dev") == flow.FLUX  # offline: from the hub id
    assert flow.family("stabilityai/stable-diffusion-3.5-medium") == flow.SD3
    assert flow.has_guidance_embeds("tiny-flux") and flow.has_guidance_embeds("tiny-flux-schnell") is False


# -- the real recipes: composed and checked, and their LoRA targets found in the published architectures

# transformer/config.json as published (the keys that shape the modules)
PUBLISHED_TRANSFORMERS = {
    # https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/transformer/config.json
    "black-forest-labs/FLUX.1-dev": (
        "FluxTransformer2DModel",
        dict(
            attention_head_dim=128,
            guidance_embeds=True,
            in_channels=64,
            joint_attention_dim=4096,
            num_attention_heads=24,
            num_layers=19,
            num_single_layers=38,
            patch_size=1,
            pooled_projection_dim=768,
            axes_dims_rope=(16, 56, 56),
        ),
    ),
    # https://huggingface.co/stabilityai/stable-diffusion-3.5-medium/blob/main/transformer/config.json
    "stabilityai/stable-diffusion-3.5-medium": (
        "SD3Transformer2DModel",
        dict(
            attention_head_dim=64,
            caption_projection_dim=1536,
            in_channels=16,
            joint_attention_dim=4096,
            num_attention_heads=24,
            num_layers=24,
            out_channels=16,
            patch_size=2,
            pooled_projection_dim=2048,
            pos_embed_max_size=384,
            qk_norm="rms_norm",
            dual_attention_layers=tuple(range(13)),
            sample_size=128,
        ),
    ),
}


@pytest.mark.parametrize(
    "recipe, expected",
    [
        (
            "flux_dev_lora",
            {
                "model.name_or_path": "black-forest-labs/FLUX.1-dev",
                "training.precision": "bf16",
                "training.activation_checkpointing": True,
                "optim.name": "adamw_bnb_8bit",
                "peft.r": 16,
                "diffusion.resolution": 1024,
                "diffusion.cache_latents": True,
                "diffusion.cache_text_embeddings": True,
                "diffusion.flux_guidance": 1.0,
            },
        ),
        (
            "sd35_medium_lora",
            {
                "model.name_or_path": "stabilityai/stable-diffusion-3.5-medium",
                "training.precision": "bf16",
                "diffusion.weighting_scheme": "logit_normal",
                "diffusion.resolution": 1024,
                "diffusion.cache_latents": True,
            },
        ),
    ],
)
def test_real_flow_recipes_validate_and_target_the_published_transformer(recipe, expected):
    import diffusers
    import torch

    cfg = config.compose([f"recipe={recipe}"])
    assert cfg.task == "text_to_image"
    for key, value in expected.items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert node == value, key
    class_name, settings = PUBLISHED_TRANSFORMERS[cfg.model.name_or_path]
    with torch.device("meta"):  # the architecture alone: no weights, no hub
        transformer = getattr(diffusers, class_name)(**settings)
    names = [name for name, _ in transformer.named_modules()]
    for target in cfg.peft.target_modules:
        assert any(name.endswith("." + target) for name in names), target
    assert transformer.config.get("guidance_embeds", False) == (cfg.diffusion.flux_guidance is not None)


# -- runs


@pytest.fixture(scope="module")
def flux_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("flux-runs")
    cfg = config.compose([*FLUX_TRAIN, "logging=none", f"training.output_dir={out}", "training.run_name=flux"])
    return cfg, launch.train(cfg)


@pytest.mark.slow
def test_flux_lora_learns_reloads_with_load_lora_weights_and_has_a_card(flux_run, tmp_path, monkeypatch):
    """The fixed set's noise, noise levels and images are fixed and the LoRA starts as an exact no-op (B = 0):
    what moves is learned. Measured: 3.777 -> 3.555 (-5.9%) after the 24 steps here; requiring -3% fails a run
    that does not learn and leaves room for rounding differences between machines."""
    import numpy as np
    from safetensors import safe_open

    cfg, result = flux_run
    run_dir, job = result.run_dir, result.trainer
    base, trained = fixed_set_loss(cfg), fixed_set_loss(cfg, run_dir)
    print(f"fixed-set loss {base:.4f} (base) -> {trained:.4f} (trained), ratio {trained / base:.3f}")
    assert trained < 0.97 * base, (base, trained)

    with safe_open(str(run_dir / rundir.LORA_WEIGHTS), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys), keys[:3]
    assert any(".add_q_proj." in k for k in keys) and any(".to_add_out." in k for k in keys)  # context stream

    transformer = job.acc.unwrap_model(job.models[0]).eval()
    trained_image = render_array(diffusion_render.pipeline_from_parts(job.parts, transformer, [], job.dtype))
    reloaded = fresh_pipeline("tiny-flux", run_dir)
    assert type(reloaded).__name__ == "FluxPipeline"
    assert np.abs(render_array(reloaded) - trained_image).max() <= 1e-5
    assert np.abs(render_array(reloaded) - render_array(fresh_pipeline("tiny-flux"))).max() > 1e-3

    assert sorted(p.name for p in (run_dir / diffusion_render.SAMPLES).iterdir()) == ["step-12-0.png", "step-24-0.png"]
    assert (run_dir / diffusion_render.GRID).is_file()
    card = (run_dir / "README.md").read_text()
    assert "Flux.1 pipeline" in card and "flow matching, weighting none, Flux guidance 1.0" in card
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "from diffusers import FluxPipeline" in snippet and "max_sequence_length=16" in snippet
    monkeypatch.chdir(tmp_path)
    exec(snippet, {})
    assert (tmp_path / "sample.png").is_file()


@pytest.mark.slow
def test_generate_renders_with_the_flux_runs_lora(flux_run, tmp_path):
    from PIL import Image

    from ft import cli

    _, result = flux_run
    out = tmp_path / "out.png"
    assert cli.main(["generate", f"run_dir={result.run_dir}", "prompt=a red circle", f"image={out}"]) == 0
    with Image.open(out) as image:
        assert image.size == (16, 16)


@pytest.mark.slow
def test_sd3_lora_with_text_encoders_8bit_adam_and_checkpointing_learns_and_reloads(tmp_path):
    """SD3's memory savers on a CPU: 8-bit Adam, gradient checkpointing; LoRA on both CLIPs too. Measured:
    fixed-set loss 3.616 -> 3.428 (-5.2%) after 24 steps."""
    import numpy as np
    from safetensors.torch import load_file

    overrides = [
        "recipe=tiny_sd3_lora",
        "training.max_steps=24",
        "optim=adamw_8bit",
        "training.activation_checkpointing=true",
        "diffusion.train_text_encoder=true",
        *QUICK,
        f"training.output_dir={tmp_path}",
    ]
    done = run_ft("train", *overrides, warm=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    weights = load_file(run_dir / rundir.LORA_WEIGHTS)
    assert {key.split(".")[0] for key in weights} == {"transformer", "text_encoder", "text_encoder_2"}
    ups = [weights[k] for k in weights if k.startswith("text_encoder") and ".lora_B." in k]
    assert ups and any(up.abs().max() > 0 for up in ups)  # the CLIPs' LoRA trained (B starts at zero)
    cfg = config.compose(overrides)
    base, trained = fixed_set_loss(cfg), fixed_set_loss(cfg, run_dir)
    print(f"fixed-set loss {base:.4f} (base) -> {trained:.4f} (trained), ratio {trained / base:.3f}")
    assert trained < 0.97 * base, (base, trained)
    reloaded = fresh_pipeline("tiny-sd3", run_dir)
    assert type(reloaded).__name__ == "StableDiffusion3Pipeline"
    assert sum("lora" in name for name, _ in reloaded.text_encoder_2.named_parameters()) > 0
    assert np.abs(render_array(reloaded) - render_array(fresh_pipeline("tiny-sd3"))).max() > 1e-3
    assert "from diffusers import StableDiffusion3Pipeline" in (run_dir / "README.md").read_text()


RESUMABLE = [
    "recipe=tiny_flux_lora",
    "training.max_steps=24",  # 20 steps after checkpoint-4: the kill lands long before the run could finish
    "training.per_device_train_batch_size=4",
    "training.save_strategy=steps",
    "training.save_steps=4",
    "training.logging_steps=1",
    "diffusion.random_flip=true",
    "diffusion.cache_latents=false",  # flips drawn while training, a batch ahead of it by the data loader
    "diffusion.caption_dropout=0.25",
    *QUICK,
]


@pytest.mark.slow
def test_flux_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    """kill -9 once checkpoint-4 is complete (the run may be further on): the rerun continues from the newest
    complete checkpoint, and its per-step losses and final LoRA equal an uninterrupted run's: LoRA, optimizer,
    schedule and RNG states (noise, noise levels, dropped captions) come back; flips are drawn from (seed, epoch,
    example) alone."""
    straight = run_ft("train", *RESUMABLE, f"training.output_dir={tmp_path}", "training.run_name=straight", warm=True)
    assert straight.returncode == 0, straight.stderr[-3000:]

    log = tmp_path / "killed.log"
    proc = start_ft("train", *RESUMABLE, f"training.output_dir={tmp_path}", "training.run_name=killed", log=log)
    deadline = time.monotonic() + 600
    while not (tmp_path / "killed" / "checkpoint-4" / rundir.TRAINER_STATE).is_file():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "killed" / rundir.LORA_WEIGHTS).exists()

    resumed = run_ft("train", *RESUMABLE, f"training.output_dir={tmp_path}", "training.run_name=killed", warm=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {tmp_path / 'killed' / 'checkpoint-'}" in resumed.stdout
    expected, got = step_losses(tmp_path / "straight"), step_losses(tmp_path / "killed")
    assert sorted(got) == list(range(1, 25))
    assert all(abs(got[step] - expected[step]) <= 1e-6 for step in expected), [(expected[s], got[s]) for s in got]
    a, b = lora(tmp_path / "straight"), lora(tmp_path / "killed")
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() <= 1e-6 for k in a)
    assert json.loads((tmp_path / "killed" / rundir.TRAINER_STATE).read_text())["global_step"] == 24


@pytest.mark.slow
def test_flux_dreambooth_with_prior_preservation(tmp_path):
    """Class images rendered by the base Flux pipeline, cached T5 / CLIP embeddings of both prompts; the batch is
    4 instance + 4 class images, so the loss is the two means added: ~2x a plain run's ~3.6."""
    done = run_ft(
        "train",
        "recipe=tiny_flux_lora",
        "training.max_steps=3",
        "training.per_device_train_batch_size=4",
        "diffusion.instance_data_dir=synthetic",
        "diffusion.instance_prompt=a photo of sks shape",
        "diffusion.with_prior_preservation=true",
        "diffusion.class_prompt=a photo of a shape",
        "diffusion.num_class_images=8",
        "diffusion.cache_text_embeddings=true",
        *QUICK,
        f"training.output_dir={tmp_path}",
        warm=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(list((run_dir / "class_images").glob("*.png"))) == 8
    assert all(5.0 < loss < 10.0 for loss in step_losses(run_dir).values()), step_losses(run_dir)
    assert "Trigger prompt: `a photo of sks shape`" in (run_dir / "README.md").read_text()
