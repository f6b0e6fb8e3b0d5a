"""`ft generate` on a text-to-image run: the run's base pipeline with its LoRA renders the prompt into a PNG,
with the run's resolution, denoising steps and guidance."""

import sys
from pathlib import Path

from ft.errors import FtError
from ft.run import rundir


def is_image_run(run_dir) -> bool:
    """Whether run_dir holds a run of a task that trains a text-to-image pipeline (text_to_image, one's own)."""
    return rundir.task_head(run_dir) == "diffusion"


def generate(run_dir, prompt: str, image: str | None) -> Path:
    import torch

    from ft.finish import loading
    from ft.tasks.text_to_image import flow
    from ft.tasks.text_to_image import render as diffusion_render

    if not prompt.strip():
        raise FtError('generate: prompt is empty: pass prompt="..."')
    path = Path(run_dir).expanduser()
    if not (path / rundir.LORA_WEIGHTS).is_file():
        raise FtError(f"run_dir={run_dir} holds no {rundir.LORA_WEIGHTS}: is the training finished?")
    cfg = loading.load_config(path)
    d = cfg.diffusion
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    if device == "cuda" and flow.family(cfg.model.name_or_path, cfg.model.revision):
        dtype = torch.bfloat16  # Flux's and SD3's T5 overflows in fp16
    pipe = diffusion_render.load_pipeline(
        cfg.model.name_or_path, cfg.model.revision, path, device, dtype, d.prediction_type
    )
    rendered = diffusion_render.render(
        pipe, [prompt], d.resolution, d.num_inference_steps, d.guidance_scale, cfg.training.seed, d.max_sequence_length
    )[0]
    out = Path(image).expanduser() if image else _next_free(path / "generated")
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered.save(out)
    print(f"ft: wrote {out}", file=sys.stderr, flush=True)
    return out


def _next_free(stem: Path) -> Path:
    n = 0
    while stem.with_name(f"{stem.name}-{n}.png").exists():
        n += 1
    return stem.with_name(f"{stem.name}-{n}.png")
