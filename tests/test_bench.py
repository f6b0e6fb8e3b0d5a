"""The benchmarks in bench/ are run by `make bench`, not by the suite; this smoke test shows that the GPU
benchmark's script starts (its imports, its arguments) and refuses a CPU unless told to use tiny shapes."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_bench_refuses_a_cpu_without_the_tiny_flag():
    result = subprocess.run([sys.executable, str(BENCH / "gpu.py")], capture_output=True, text=True, cwd=BENCH)
    assert result.returncode != 0 and "--tiny" in result.stderr
