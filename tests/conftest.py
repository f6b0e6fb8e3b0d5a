"""Offline by default; the tiny model is built once into a cache shared by every test session."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FT_CACHE", str(Path(tempfile.gettempdir()) / "ft-test-cache"))


def run_ft(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (`env`: its whole environment, default this one's)."""
    return subprocess.run(
        [sys.executable, "-m", "ft", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from ft import tiny
    from ft.schema import TinyModelConfig

    return tiny.ensure(TinyModelConfig())


# A short, fast training run: a handful of steps, no TensorBoard, no intermediate checkpoints.
QUICK = ["training.max_steps=5", "training.eval_steps=5", "training.save_strategy=no", "logging=none",
         "data.synthetic.num_examples=200"]
