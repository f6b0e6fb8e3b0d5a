"""Shared by the CPU benchmarks: run a command, read a run's throughput, print a table."""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": str(ROOT / "src"),
}


def use_threads(threads: int | None) -> None:
    """Torch threads of the benchmarked commands (OMP_NUM_THREADS); None: torch's default (one per core).
    On a machine shared with other jobs, one thread each keeps small operations such as generation steps
    from waiting on a descheduled second thread at every parallel region, which inflates them many times."""
    if threads:
        ENV["OMP_NUM_THREADS"] = str(threads)


def run(command: list[str]) -> float:
    """Wall seconds of a command; fails loudly if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def tokens_per_second(trainer_state: Path) -> float:
    """Tokens trained per second of the training loop, from a run's trainer_state.json (TRL logs the
    running token count; train_runtime is the loop's wall time)."""
    history = json.loads(trainer_state.read_text())["log_history"]
    tokens = max(row["num_tokens"] for row in history if "num_tokens" in row)
    runtime = next(row["train_runtime"] for row in history if "train_loss" in row)  # the run's summary row
    return tokens / runtime


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values)
