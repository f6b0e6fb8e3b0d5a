"""FSDP vs DDP on 2 CPU processes: the resident peak of a process, measured, beside `ft estimate` (issue 27).

    python bench/fsdp_memory.py [--out FILE]

The same LoRA run (the tiny Llama grown to 54.8M parameters, as tests/test_estimate.py grows it, so that
the model is a visible part of a process) is launched twice with ft's own accelerate configs: DDP, and
FSDP2 through the test-only shim in tests/fsdp_on_cpu (Accelerate runs FSDP on GPUs only). Each run writes
its rank-0 process's peak (all_results.json: cpu_peak_rss_gb). glibc's malloc is told to return freed
blocks at once (MALLOC_MMAP_THRESHOLD_), so that the peak tracks what torch holds.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "tests" / "fsdp_on_cpu"
SHAPE = [
    "model.tiny.hidden_size=1024",
    "model.tiny.intermediate_size=2752",
    "model.tiny.num_attention_heads=8",
    "model.tiny.num_key_value_heads=4",
    "model.tiny.vocab_size=4096",
]
RUN = [
    *SHAPE,
    "peft.modules_to_save=null",  # FSDP does not average a fully trained lm_head's gradient (ft refuses it)
    "training.max_steps=3",
    "training.per_device_train_batch_size=8",
    "training.max_length=128",
    "training.packing=true",
    "data.synthetic.num_examples=400",
    "data.eval_size=0",
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.report_exact_match=false",
    "training.save_strategy=no",
    "logging=none",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measured_peak(strategy: str, out: Path) -> float:
    from ft import config
    from ft.run import distributed

    cfg = config.compose(
        [
            f"distributed={strategy}",
            "distributed.num_processes=2",
            f"distributed.main_process_port={free_port()}",
            "peft.modules_to_save=null",
        ]
    )
    config_file = out / f"{strategy}.yaml"
    config_file.write_text(yaml.safe_dump(distributed.accelerate_config(cfg, gpus=0)))
    env = os.environ | {
        "FT_TEST_FSDP_ON_CPU": "1",
        "PYTHONPATH": os.pathsep.join([str(SHIM), *sys.path]),
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "-m", "ft"]
    command += ["train", *RUN, f"training.output_dir={out}", f"training.run_name={strategy}"]
    subprocess.run(command, env=env, check=True, capture_output=True)
    return json.loads((out / strategy / "all_results.json").read_text())["cpu_peak_rss_gb"]


def estimated(strategy: str) -> dict[str, float]:
    from ft import config
    from ft.commands import estimate

    cfg = config.compose([*RUN, f"distributed={strategy}", "distributed.num_processes=2"])
    printed = estimate.estimate(cfg, estimate.EstimateOptions(device="cpu"))
    return {
        line.split()[0]: float(line.split()[1])
        for line in printed.splitlines()
        if line.startswith("  ") and line.split()[0] in ("weights", "gradients", "total")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="append the markdown table to this file")
    args = parser.parse_args()
    rows = [
        "| strategy (2 CPU processes) | measured peak, rank 0 (GiB) | estimate: weights / gradients / total (GiB) |",
        "| --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("ddp", "fsdp"):
            peak, guess = measured_peak(strategy, Path(tmp)), estimated(strategy)
            estimate = " / ".join(f"{guess[part]:.2f}" for part in ("weights", "gradients", "total"))
            rows.append(f"| {strategy} | {peak:.3f} | {estimate} |")
            print(rows[-1], flush=True)
    if args.out:
        with args.out.open("a") as out:
            out.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
