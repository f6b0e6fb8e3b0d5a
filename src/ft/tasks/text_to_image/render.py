"""Rendering images with a text-to-image pipeline: validation samples during training, DreamBooth's class
images from the base model, `ft generate` on a finished run, and the model card's sample grid."""

from pathlib import Path

from ft.tasks.text_to_image import pipeline as diffusion

SAMPLES = "samples"  # the run dir's folder of validation renders: step-<N>-<i>.png
GRID = "samples.png"  # the model card's sample grid


def pipeline_from_parts(parts: diffusion.Parts, denoiser, text_encoders: list, dtype):
    """A pipeline sharing the models being trained (no copy), for renders mid-training. `text_encoders`: the
    trained ones first (Flux / SD3: the CLIPs); the frozen rest comes from `parts`."""
    pipeline_class = parts.pipeline_class()
    encoders = [*text_encoders, *parts.text_encoders[len(text_encoders) :]]
    suffixes = ["", "_2", "_3"][: len(encoders)]
    components = {"vae": parts.vae, pipeline_class._lora_loadable_modules[0]: denoiser}
    components |= {f"text_encoder{n}": encoder for n, encoder in zip(suffixes, encoders)}
    components |= {f"tokenizer{n}": tokenizer for n, tokenizer in zip(suffixes, parts.tokenizers)}
    pipe = pipeline_class.from_pretrained(parts.path, dtype=dtype, **components)
    if not parts.flow:
        pipe.scheduler.register_to_config(prediction_type=parts.noise_scheduler.config.prediction_type)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(base: str, revision: str | None, lora_dir: Path | None, device: str, dtype, prediction_type=None):
    """The base pipeline, with a run's LoRA loaded when `lora_dir` is given; `prediction_type`: the one
    training used, when it overrode the model's."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(diffusion.resolve_path(base), revision=revision, dtype=dtype)
    if prediction_type:
        pipe.scheduler.register_to_config(prediction_type=prediction_type)
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def render(
    pipe, prompts: list[str], resolution: int, steps: int, guidance: float, seed: int, max_sequence_length=None
) -> list:
    """One PIL image per prompt, each from its own seeded generator (the same prompt: the same image).
    `max_sequence_length`: T5's tokens per prompt, for the pipelines that have T5 (Flux, SD3)."""
    import inspect

    import torch

    options = {}
    if max_sequence_length and "max_sequence_length" in inspect.signature(pipe.__call__).parameters:
        options["max_sequence_length"] = max_sequence_length
    images = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator(device="cpu").manual_seed(seed + i)
        output = pipe(
            prompt,
            height=resolution,
            width=resolution,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            **options,
        )
        images.append(output.images[0])
    return images


def grid(images: list, columns: int = 4):
    from PIL import Image

    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    width, height = images[0].size
    sheet = Image.new("RGB", (columns * width, rows * height), "white")
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * width, (i // columns) * height))
    return sheet


def class_images(base: str, revision: str | None, folder: Path, diffusion_cfg, device: str, dtype) -> Path:
    """DreamBooth prior preservation: render class_prompt with the base model until `folder` holds
    num_class_images images (earlier renders are kept and reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.png"))
    missing = diffusion_cfg.num_class_images - len(have)
    if missing > 0:
        pipe = load_pipeline(base, revision, None, device, dtype, diffusion_cfg.prediction_type)
        prompts = [diffusion_cfg.class_prompt] * missing
        images = render(
            pipe,
            prompts,
            diffusion_cfg.resolution,
            diffusion_cfg.num_inference_steps,
            diffusion_cfg.guidance_scale,
            len(have),
            diffusion_cfg.max_sequence_length,
        )
        for i, image in enumerate(images, len(have)):
            image.save(folder / f"class-{i:05d}.png")
        del pipe
    return folder
