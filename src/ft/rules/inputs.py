"""Is the model there, can the hub be reached: checked before the run dir is touched or anything loads."""

import os
import socket
from pathlib import Path

from ft.config import registry
from ft.config.schema import TINY_MODEL
from ft.errors import FtError
from ft.run import rundir

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
MODEL_INDEX = "model_index.json"  # a diffusers pipeline directory has it; a transformers model has config.json


def model_file(head: str) -> str:
    """The file that shows a model of this head is there: a pipeline's model_index.json, or config.json."""
    return MODEL_INDEX if head == "diffusion" else "config.json"


def check_offline_model(cfg) -> None:
    """On the config alone: an offline model ft builds for other tasks only (e.g. tiny-sd for text_to_image)."""
    name, owner = cfg.model.name_or_path, registry.owner_of(cfg.model.name_or_path)
    if owner is not None and name not in registry.get(cfg.task).offline_models:
        raise FtError(
            f"model.name_or_path={name} is {registry.HEAD_NAMES[owner.head]}, built offline for task={owner.name}: "
            f"use task={owner.name}, or model.name_or_path=tiny for task={cfg.task}"
        )


def check_model_kind(cfg) -> None:
    """Before anything loads: a local or cached model of the wrong kind (a diffusers pipeline or a
    transformers model) for the task's head."""
    name, head = cfg.model.name_or_path, registry.get(cfg.task).head
    if name == TINY_MODEL or registry.owner_of(name) is not None:
        return
    files = _files(name, cfg.model.revision)
    if files is None:
        return  # not here yet: check_sources says how to get it
    if head == "diffusion" and MODEL_INDEX not in files:
        raise FtError(
            f"model.name_or_path={name} is not a diffusers pipeline (no {MODEL_INDEX}): task={cfg.task} "
            f"trains one; use a Stable Diffusion / SDXL pipeline, or tiny-sd / tiny-sdxl"
        )
    if head != "diffusion" and MODEL_INDEX in files and "config.json" not in files:
        raise FtError(
            f"model.name_or_path={name} is a diffusers pipeline, not a language model: use task=text_to_image, "
            f"or a language model for task={cfg.task}"
        )


def _files(name: str, revision) -> dict | None:
    """{file name: text} of model_index.json / config.json in a local dir or the hub cache; None: neither."""
    found = {}
    for file in (MODEL_INDEX, "config.json"):
        path = Path(name).expanduser() / file
        if not Path(name).expanduser().is_dir():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, file, revision=revision)
            path = Path(cached) if isinstance(cached, str) else None
        if path is not None and path.is_file():
            found[file] = path.read_text()
    return found or (None if not Path(name).expanduser().is_dir() else found)


def check_sources(cfg) -> None:
    """Before the run dir is touched or anything loads: is the model there, can the hub be reached.
    (What the machine can do is ft.rules.machine.)"""
    head = registry.get(cfg.task).head
    model_available(cfg.model.name_or_path, cfg.model.revision, model_file(head))
    if cfg.model.adapter:
        adapter_available(cfg.model.adapter)
    source = cfg.data.source
    if source != "synthetic" and not Path(source).expanduser().exists():
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE and not os.environ.get("HF_DATASETS_OFFLINE"):
            hub_reachable(f"data.source={source}")


def adapter_available(path: str) -> None:
    """model.adapter: a directory PEFT saved an adapter in (a finished ft run's directory is one)."""
    import json

    config = Path(path).expanduser() / rundir.ADAPTER_CONFIG
    if not config.is_file():
        raise FtError(
            f"model.adapter={path} holds no adapter (no adapter_config.json): point it to a finished run's "
            f"directory, e.g. runs/<sft run>"
        )
    try:
        json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise FtError(f"model.adapter={path}: adapter_config.json is not valid JSON ({e})") from None


def model_available(name: str, revision: str | None, file: str = "config.json") -> None:
    """Fail at once, instead of after ~46 s of retries, when a hub model cannot be had. `file`: the one it
    must have (a diffusers pipeline: model_index.json)."""
    if name == TINY_MODEL or registry.owner_of(name) is not None or Path(name).expanduser().is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, file, revision=revision), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise FtError(
            f"model.name_or_path={name} is neither a local directory nor in the hub cache "
            f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1: download it first (hf download {name}), "
            f"point to a local directory, or unset HF_HUB_OFFLINE"
        )
    hub_reachable(f"model.name_or_path={name}")


def hub_reachable(what: str) -> None:
    """One TCP connect to the hub endpoint (HF_ENDPOINT) with a short timeout. Behind a proxy the
    direct connect says nothing, so it is skipped there."""
    if any(os.environ.get(v) for v in PROXY_VARS):
        return
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=5).close()
    except OSError as e:
        raise FtError(
            f"{what} is not cached locally and {url.hostname}:{port} cannot be reached "
            f"({e.strerror or e}): connect to the network, or use a local directory / set HF_HUB_OFFLINE=1 "
            f"with a cached copy"
        ) from None
