"""The end of a text-to-image run (rank 0): a sample grid rendered with the trained LoRA, the model card
(README.md: the base, the trigger / instance prompt, the sample grid, results, a usage snippet that runs,
the resolved recipe) and the push, when the recipe asks for one."""

from pathlib import Path

import yaml

from ft.finish import card
from ft.run import rundir

USAGE = """import torch
from diffusers import {pipeline}

adapter = "{lora}"
pipe = {pipeline}.from_pretrained("{base}", dtype=torch.float32)
pipe.load_lora_weights(adapter)
image = pipe({prompt!r}, num_inference_steps={steps}, guidance_scale={guidance}{options}).images[0]
image.save("sample.png")
"""
MODEL_NAMES = {  # a pipeline class: the model family the card names
    "StableDiffusionPipeline": "Stable Diffusion",
    "StableDiffusionXLPipeline": "SDXL",
    "FluxPipeline": "Flux.1",
    "StableDiffusion3Pipeline": "Stable Diffusion 3",
}


def sample_prompts(cfg) -> list[str]:
    """What the card shows: the validation prompts, else the instance prompt, else a synthetic caption."""
    d = cfg.diffusion
    if d.validation_prompts:
        return list(d.validation_prompts)
    if d.instance_prompt:
        return [d.instance_prompt]
    from ft.tasks.text_to_image import images

    return [e.caption for e in images.synthetic(4, 8, cfg.data.seed + 1)]


def usage_snippet(cfg, base: str, lora: str, pipeline: str = "DiffusionPipeline") -> str:
    d = cfg.diffusion
    flow = pipeline in ("FluxPipeline", "StableDiffusion3Pipeline")
    return USAGE.format(
        pipeline=pipeline,
        base=base,
        lora=lora,
        prompt=sample_prompts(cfg)[0],
        steps=d.num_inference_steps,
        guidance=d.guidance_scale,
        options=f", max_sequence_length={d.max_sequence_length}" if flow else "",
    )


FILES = {
    rundir.LORA_WEIGHTS: "diffusers' format: `pipe.load_lora_weights(...)` (the snippet below)",
    "pytorch_lora_weights_ema.safetensors": "the exponential moving average of the LoRA weights (diffusion.ema_decay), "
    'diffusers\' format: `pipe.load_lora_weights(..., weight_name="pytorch_lora_weights_ema.safetensors")`',
    "lora_kohya.safetensors": "kohya's format, for AUTOMATIC1111 / Forge (`models/Lora`) and ComfyUI (`models/loras`, "
    "LoraLoader); diffusers loads it too",
}


def files_section(run_dir: Path) -> list[str]:
    """The card's list of the run's weight files, each with what it is for."""
    present = [name for name in FILES if (Path(run_dir) / name).is_file()]
    return ["## Files", "", *[f"- `{name}`: {FILES[name]}" for name in present], ""] if present else []


def objective(cfg, flow: bool) -> str:
    """The loss's settings, as the card states them."""
    d = cfg.diffusion
    if not flow:
        return f"prediction {d.prediction_type or 'the scheduler’s'}, SNR gamma {d.snr_gamma}"
    scheme = d.weighting_scheme
    if scheme == "logit_normal":
        scheme += f" (mean {d.logit_mean}, std {d.logit_std})"
    elif scheme == "mode":
        scheme += f" (scale {d.mode_scale})"
    guidance = f", Flux guidance {d.flux_guidance}" if d.flux_guidance is not None else ""
    return f"flow matching, weighting {scheme}{guidance}, T5 length {d.max_sequence_length}"


def render_card(
    cfg, run_dir: Path, metrics: dict, base: str, num_processes: int, pipeline: str = "StableDiffusionPipeline"
) -> str:
    t, p, d = cfg.training, cfg.peft, cfg.diffusion
    xl = MODEL_NAMES.get(pipeline, pipeline)
    flow = pipeline in ("FluxPipeline", "StableDiffusion3Pipeline")
    meta = {
        "base_model": base,
        "library_name": "diffusers",
        "pipeline_tag": "text-to-image",
        "tags": ["ft", "text-to-image", "diffusers", "lora"]
        + (["flux"] if pipeline == "FluxPipeline" else ["sd3"] if pipeline == "StableDiffusion3Pipeline" else [])
        + (["dreambooth"] if d.instance_data_dir else []),
    }
    if cfg.hub.license:
        meta["license"] = cfg.hub.license
    if d.instance_prompt or d.trigger:
        trigger = f"Trigger prompt: `{d.instance_prompt or d.trigger}`"
    else:
        trigger = "No trigger word: prompt as captioned."
    lora = cfg.hub.repo_id or str(Path(run_dir).resolve())
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {Path(run_dir).name}",
        "",
        f"LoRA weights for the {xl} pipeline `{base}`, trained with ft (task=text_to_image, recipe "
        f"`{cfg.recipe}`){' with DreamBooth' if d.instance_data_dir else ''}. {trigger}",
        "",
        "![samples](samples.png)",
        "",
        f"Samples: {', '.join(f'`{prompt}`' for prompt in sample_prompts(cfg))}.",
        "",
        "## Training",
        "",
        f"- LoRA r={p.r}, alpha={p.lora_alpha} on the {'transformer' if flow else 'UNet'} attention "
        f"{p.target_modules}" + (" and the text encoder(s)" if d.train_text_encoder else ""),
        f"- {t.max_steps if t.max_steps > 0 else f'{t.num_train_epochs} epoch(s)'} steps, batch "
        f"{t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation x {num_processes} "
        f"process(es), learning rate {t.learning_rate} ({t.lr_scheduler_type}), optimizer {cfg.optim.name}, "
        f"precision {t.precision}, resolution {d.resolution}, {objective(cfg, flow)}, "
        f"aspect-ratio buckets {'on' if d.bucketing else 'off'}"
        + (f", EMA decay {d.ema_decay}" if d.ema_decay else "")
        + (f", caption dropout {d.caption_dropout}" if d.caption_dropout else "")
        + (f", noise offset {d.noise_offset}" if d.noise_offset else ""),
        f"- Data: `{d.instance_data_dir or cfg.data.source}`; mean train loss {metrics.get('train_loss', 0):.4f} "
        f"in {metrics.get('train_runtime', 0):.1f} s{card.peak_memory_clause(metrics)}",
        "",
        "![loss curve](loss.png)",
        "",
        *files_section(run_dir),
        "## Usage",
        "",
        "```python",
        usage_snippet(cfg, base, lora, pipeline).rstrip(),
        "```",
        "",
        'Or with ft: `python -m ft generate run_dir=<this directory> prompt="..."`.',
        "",
        *card.recipe_section(run_dir),
    ]
    return "\n".join(lines)


def finish(job, metrics: dict) -> None:
    """Samples grid, card, push; a summary line."""
    from ft.finish import hub
    from ft.tasks.text_to_image import pipeline as diffusion
    from ft.tasks.text_to_image import render as diffusion_render
    from ft.training import session

    cfg, run_dir, acc = job.cfg, job.run_dir, job.acc
    models = [acc.unwrap_model(m) for m in job.models]
    for model in models:
        model.eval()
    pipe = diffusion_render.pipeline_from_parts(job.parts, models[0], models[1:], job.dtype)
    d = cfg.diffusion
    with acc.autocast():
        images = diffusion_render.render(
            pipe,
            sample_prompts(cfg),
            d.resolution,
            d.num_inference_steps,
            d.guidance_scale,
            cfg.training.seed,
            d.max_sequence_length,
        )
    diffusion_render.grid(images).save(run_dir / diffusion_render.GRID)
    name = cfg.model.name_or_path
    base = diffusion.resolve_path(name) if Path(name).expanduser().is_dir() or name.startswith("tiny-") else name
    pipeline = job.parts.pipeline_class().__name__
    (run_dir / rundir.CARD).write_text(render_card(cfg, run_dir, metrics, base, acc.num_processes, pipeline))
    session.print_summary(run_dir, metrics)
    if cfg.hub.push:
        uploaded = hub.push(run_dir, cfg.hub.repo_id, private=cfg.hub.private, revision=cfg.hub.revision)
        print(f"ft: pushed {len(uploaded)} files to {cfg.hub.repo_id}", flush=True)
