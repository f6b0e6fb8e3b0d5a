"""task=text_to_image: LoRA on a Stable Diffusion (1.5, 2.1) or SDXL UNet, or on a Flux.1 / SD3 transformer
(flow matching), with DreamBooth, in a plain Accelerate loop (there is no Trainer for diffusion). The whole
modality is this package:

    schema.py     its config section (`diffusion.*`)       rules.py     its rules
    images.py     captioned images in, tensors out         batches.py   batches, cached latents / embeddings
    tiny.py       the offline tiny pipelines (tiny-sd)     pipeline.py  the pipeline's parts, LoRA, the loss
    flow.py       Flux / SD3: parts, captions, flow loss   bases.py     where a base is, which pipeline it is
    loop.py       the training loop, top to bottom         state.py     optimizer and checkpoints
    render.py     validation renders, DreamBooth classes   finish.py    card, sample grid, push
    generate.py   `ft generate` for an image run           buckets.py   aspect-ratio buckets, batch order
    kohya.py      the LoRA in kohya's format (A1111, ComfyUI)   losses.py   the per-example (masked) mean
"""

from ft.config.registry import Task
from ft.tasks.text_to_image.schema import TINY_DIFFUSION_MODELS, DiffusionConfig


def train(cfg, command: list[str] | None = None):
    from ft.tasks.text_to_image import loop

    return loop.train(cfg, command)


def check_config(cfg) -> None:
    from ft.tasks.text_to_image import rules

    rules.check_config(cfg)


def check_inputs(cfg) -> None:
    from ft.tasks.text_to_image import rules

    rules.check_images(cfg)


def export_kohya(run_dir, cfg, out) -> None:
    from ft.tasks.text_to_image import kohya

    kohya.export(run_dir, cfg, out)


TASK = Task(
    name="text_to_image",
    summary="LoRA on a Stable Diffusion / SDXL UNet or a Flux.1 / SD3 transformer from captioned images, "
    "DreamBooth included (Accelerate loop)",
    formats=(),  # captioned images (images.py), no text format
    train=train,
    section=DiffusionConfig,
    section_name="diffusion",
    head="diffusion",
    no_evaluation="a text-to-image run's validation renders are in its samples/ folder and model card; render "
    "more with ft generate",
    outputs=(
        "pytorch_lora_weights.safetensors",
        "lora_kohya.safetensors",
        "config.yaml",
        "README.md",
        "loss.png",
        "samples.png",
    ),
    check_config=check_config,
    check_inputs=check_inputs,
    offline_models=tuple(TINY_DIFFUSION_MODELS),
    exports={"kohya": export_kohya},
)
