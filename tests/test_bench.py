"""bench/gpu.py is meant for an H100-class GPU; its --tiny flag runs the same code end to end here."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_gpu_bench_runs_end_to_end_on_cpu_with_tiny_shapes():
    result = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--tiny"], capture_output=True, text=True, timeout=900, cwd=BENCH
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    runs = [line.split("|")[1].strip() for line in table[2:]]
    assert "lora plain" in runs and "lora ft best" in runs
    for line in table[2:]:
        assert float(line.split("|")[2]) > 0  # tokens/s measured
    assert "training.packing=true" in result.stdout


def test_gpu_bench_refuses_a_cpu_without_the_tiny_flag():
    result = subprocess.run([sys.executable, str(BENCH / "gpu.py")], capture_output=True, text=True, cwd=BENCH)
    assert result.returncode != 0 and "--tiny" in result.stderr


@pytest.mark.slow
def test_cache_bench_runs_with_a_small_dataset():
    result = subprocess.run(
        [sys.executable, str(BENCH / "cache.py"), "--examples", "100", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=BENCH,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 1 ")]
    first, cached, ratio = (float(cell) for cell in row.split("|")[2:5])
    assert first > 0 and cached > 0 and ratio == pytest.approx(cached / first, abs=2e-3)
