"""Text-to-image step time on a CPU: the tiny Stable Diffusion pipeline (UNet) against the tiny Flux and SD3
ones (flow-matching transformers), each with its images encoded by the VAE at every step and with the
latents cached once before training (diffusion.cache_latents). Alternating rounds of `ft train` runs of
the tiny recipes (same data, batch, resolution and steps); each run's step time is its training loop's wall
time (train_results.json's train_runtime: after setup and caching, before the final renders) over its
steps. Reported per configuration as the median over rounds, and as ratios to tiny SD without caching.

    python bench/image_step_time.py [--steps 20] [--rounds 3] [--threads 1]
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ENV, median, table, use_threads

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--threads", type=int, default=1, help="torch threads per run (0: torch's default)")
args = parser.parse_args()
use_threads(args.threads or None)

MODELS = {"tiny SD": "tiny_sd_lora", "tiny Flux": "tiny_flux_lora", "tiny SD3": "tiny_sd3_lora"}
work = Path(tempfile.mkdtemp(prefix="ft-bench-image-"))


def one_run(recipe: str, cached: bool, name: str) -> tuple[float, str]:
    """(seconds per optimizer step, the run's 'trainable parameters' line)."""
    command = [
        sys.executable,
        "-m",
        "ft",
        "train",
        f"recipe={recipe}",
        f"training.max_steps={args.steps}",
        f"diffusion.cache_latents={str(cached).lower()}",
        "diffusion.num_inference_steps=2",
        "logging=none",
        f"training.output_dir={work}",
        f"training.run_name={name}",
    ]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    runtime = json.loads((work / name / "train_results.json").read_text())["train_runtime"]
    params = re.search(r"trainable parameters ([\d,]+) of ([\d,]+)", result.stdout)
    return runtime / args.steps, f"{params.group(1)} of {params.group(2)}" if params else "?"


times: dict[tuple[str, bool], list[float]] = {}
sizes: dict[str, str] = {}
for r in range(args.rounds):
    for label, recipe in MODELS.items():
        for cached in (False, True):
            seconds, sizes[label] = one_run(recipe, cached, f"{recipe}-{'cached' if cached else 'vae'}-{r}")
            times.setdefault((label, cached), []).append(seconds)
            print(f"round {r + 1}: {label:9s} cached={cached!s:5s} {1000 * seconds:7.1f} ms/step", flush=True)

reference = median(times[("tiny SD", False)])
rows = []
for (label, cached), values in times.items():
    step = median(values)
    uncached = median(times[(label, False)])
    rows.append([label, "yes" if cached else "no", sizes[label], 1000 * step, step / reference, step / uncached])
print()
print(
    table(
        ["model", "cached latents", "trainable of total params", "ms/step", "/ tiny SD uncached", "/ same uncached"],
        rows,
    )
)
