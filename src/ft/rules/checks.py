"""Checks of the inputs that need more than the config: files, the hub cache, the network, the
tokenized data, free disk space. Each failure is an FtError naming the problem and the fix."""

import json
import math
import os
import shutil
import socket
from pathlib import Path

from ft.config.schema import TINY_MODEL
from ft.errors import FtError

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def preflight(cfg) -> None:
    """Before the run dir is touched or anything loads: is the model there, can the hub be reached.
    (What the hardware can do is ft.run.hardware.check_requirements.)"""
    model_available(cfg.model.name_or_path, cfg.model.revision)
    source = cfg.data.source
    if source != "synthetic" and not Path(source).expanduser().exists():
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE and not os.environ.get("HF_DATASETS_OFFLINE"):
            hub_reachable(f"data.source={source}")


def model_available(name: str, revision: str | None) -> None:
    """Fail at once, instead of after ~46 s of retries, when a hub model cannot be had."""
    if name == TINY_MODEL or Path(name).expanduser().is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise FtError(f"model.name_or_path={name} is neither a local directory nor in the hub cache "
                      f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1: download it first (hf download {name}), "
                      f"point to a local directory, or unset HF_HUB_OFFLINE")
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
        raise FtError(f"{what} is not cached locally and {url.hostname}:{port} cannot be reached "
                      f"({e.strerror or e}): connect to the network, or use a local directory / set HF_HUB_OFFLINE=1 "
                      f"with a cached copy") from None


def locate_bad_json(files: list[Path]) -> None:
    """Raise an FtError naming the file and line of the first malformed record (datasets' own error
    names neither). Called only after datasets failed to read the files, so good files cost nothing."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise FtError(f"{path}: not UTF-8 text (byte {e.start}): re-encode the file as UTF-8") from None
        if path.suffix == ".json":
            try:
                json.loads(text)
            except ValueError as e:
                raise FtError(f"{path} line {e.lineno}: invalid JSON ({e.msg}, column {e.colno}): fix the file") from None
            continue
        rows = 0
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise FtError(f"{path} line {number}: invalid JSON ({e.msg}, column {e.colno}): "
                              f"fix or remove that line (one JSON object per line)") from None
            if not isinstance(record, dict):
                raise FtError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}: "
                              f"write one {{...}} object per line")
            rows += 1
        if rows == 0:
            raise FtError(f"{path} has no records: data.source needs at least one JSON object per line")


def lengths(prepared, num_examples: int, max_length: int, packing: bool) -> None:
    """After TRL tokenized and truncated the training set: error when no example fits
    training.max_length, a count and a warning when some do not. TRL truncates to max_length and
    drops the examples left with no trainable token, so both are counted."""
    if packing or not max_length:
        return
    import pyarrow.compute as pc

    kept = len(prepared)
    at_limit = pc.sum(pc.equal(pc.list_value_length(prepared.with_format("arrow")["input_ids"]), max_length)).as_py() if kept else 0
    dropped = num_examples - kept
    too_long = (at_limit or 0) + dropped
    if too_long >= num_examples:
        raise FtError(f"all {num_examples} training examples are longer than training.max_length={max_length} tokens"
                      f"{f' ({dropped} left with nothing to learn)' if dropped else ''}: raise training.max_length")
    if too_long:
        print(f"ft: warning: {too_long} of {num_examples} training examples are longer than training.max_length="
              f"{max_length} tokens ({at_limit} truncated, {dropped} dropped with nothing left to learn): "
              f"raise training.max_length to keep them whole", flush=True)


def checkpoint_bytes(model) -> int:
    """About one checkpoint: the trainable weights plus Adam's two fp32 moments per trainable value."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return sum(p.numel() * (p.element_size() + 8) for p in trainable)


def disk_space(trainer, cfg, run_dir: Path, num_examples: int) -> None:
    """Before training: will the checkpoints the run keeps at once, plus the final weights, fit?"""
    t = cfg.training
    per_checkpoint = checkpoint_bytes(trainer.model)
    steps_per_epoch = math.ceil(num_examples / (t.per_device_train_batch_size * t.gradient_accumulation_steps))
    total_steps = t.max_steps if t.max_steps > 0 else math.ceil(steps_per_epoch * t.num_train_epochs)
    if t.save_strategy == "no":
        saves = 0
    elif t.save_strategy == "epoch":
        saves = math.ceil(total_steps / steps_per_epoch)
    else:
        every = t.save_steps if t.save_steps >= 1 else max(1, math.ceil(t.save_steps * total_steps))
        saves = math.ceil(total_steps / every)
    kept = saves if not t.save_total_limit else min(saves, t.save_total_limit + 1)  # +1: written before the oldest goes
    needed = kept * per_checkpoint + per_checkpoint // 3
    free = shutil.disk_usage(run_dir).free
    if needed > free:
        raise FtError(f"not enough disk space in {run_dir.parent}: the run needs about {_size(needed)} "
                      f"({kept} checkpoints of {_size(per_checkpoint)} + the final weights), {_size(free)} free: "
                      f"free some space, lower training.save_total_limit, or set training.output_dir elsewhere")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
