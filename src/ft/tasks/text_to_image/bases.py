"""Where a text-to-image base is (a local directory, a hub id, an offline tiny pipeline built on first use)
and which diffusers pipeline it is (its model_index.json): what pipeline.py (SD, SDXL) and flow.py (Flux,
SD3) both ask before loading."""

import json
from pathlib import Path

from ft.tasks.text_to_image import tiny as tiny_diffusion

MODEL_INDEX = "model_index.json"  # a diffusers pipeline's


def resolve_path(name: str) -> str:
    """Where from_pretrained loads from; builds a tiny pipeline on first use."""
    if tiny_diffusion.is_tiny(name):
        return str(tiny_diffusion.ensure(name))
    return str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name


def pipeline_class_name(path: str, revision: str | None = None) -> str | None:
    """The `_class_name` of a pipeline's model_index.json (local or in the hub cache); None: not a pipeline."""
    index = Path(path) / MODEL_INDEX
    if not index.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, MODEL_INDEX, revision=revision)
        if not isinstance(cached, str):
            return None
        index = Path(cached)
    return json.loads(index.read_text()).get("_class_name")
