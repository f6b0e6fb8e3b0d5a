"""Is the model there, can the hub be reached: checked before the run dir is touched or anything loads."""

import os
import socket
from pathlib import Path

from ft.config.diffusion_schema import TINY_DIFFUSION_MODELS
from ft.config.schema import TINY_MODEL
from ft.errors import FtError
from ft.rules import diffusion
from ft.run import rundir

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def check_sources(cfg) -> None:
    """Before the run dir is touched or anything loads: is the model there, can the hub be reached.
    (What the machine can do is ft.rules.machine.)"""
    model_available(cfg.model.name_or_path, cfg.model.revision, diffusion.model_file(cfg))
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
    if name in (TINY_MODEL, *TINY_DIFFUSION_MODELS) or Path(name).expanduser().is_dir():
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
