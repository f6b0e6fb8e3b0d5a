"""Where the wall time of `python -m ft train` goes, next to the hand-written TRL script
(bench/baseline_trl.py) doing the same training: each command runs in a child process with timers around
its phases (imports, config, data, model, trainer, training loop, final eval, saving, loss plot,
exact-match report, model card); the two alternate, and the table shows each phase's median seconds.
The same overrides as bench/overhead.py, so its numbers explain that comparison.

    python bench/phases.py [--steps 60] [--repeats 1] [--threads N] [key=value ...]   overrides go to both

A phase whose function moved or was renamed is reported as not timed (its time lands in "other").
"""

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

from common import ENV, ROOT, median, table, use_threads

BENCH_OVERRIDES = [
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.save_strategy=no",
    "logging=none",
]
IMPORTS = "imports: torch, transformers, TRL, PEFT, datasets"
# (module, attribute, phase) timed in the child; phases starting with _ are split up in `phases`
TIMED = {
    "ft": [
        ("ft.config", "compose", "config: compose + validate"),
        ("ft.training.build", "trainer", "_build"),  # the whole trainer build; its parts below
        ("ft.training.build", "inputs", "data rows (+ tokenizer)"),
        ("ft.data.cache", "lookup", "tokenized data (ft's cache)"),
        ("ft.training.build", "base_model", "model load"),
        ("transformers", "Trainer.train", "_train"),  # the loop is its train_runtime; the rest is set-up
        ("ft.training.session", "_evaluate", "final eval"),
        ("transformers", "Trainer.save_model", "save adapter + state"),
        ("transformers", "Trainer.save_state", "save adapter + state"),
        ("ft.run.rundir", "plot_loss", "loss plot"),
        ("ft.finish.answers", "report", "exact-match report"),
        ("ft.training.session", "_finish", "model card (+ push)"),
    ],
    "baseline": [
        ("ft.config", "compose", "config: compose + validate"),
        ("baseline_trl", "datasets", "data rows (+ tokenizer)"),
        ("transformers", "AutoModelForCausalLM.from_pretrained", "model load"),
        ("trl", "SFTTrainer.__init__", "trainer (+ TRL's tokenization on a cache miss)"),
        ("transformers", "Trainer.train", "_train"),
        ("transformers", "Trainer.save_model", "save adapter + state"),
        ("transformers", "Trainer.save_state", "save adapter + state"),
    ],
}
ORDER = [
    IMPORTS,
    "config: compose + validate",
    "data rows (+ tokenizer)",
    "tokenized data (ft's cache)",
    "model load",
    "trainer (+ TRL's tokenization on a cache miss)",
    "train(): set-up outside the loop",
    "training loop (train_runtime)",
    "final eval",
    "save adapter + state",
    "loss plot",
    "exact-match report",
    "model card (+ push)",
    "other (checks, run dir, tokenizer, summary ...)",
    "interpreter start + exit",
]


def child(mode: str, output_dir: str, overrides: list[str]) -> None:
    begin = time.perf_counter()
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    spent = {IMPORTS: time.perf_counter() - begin}
    missing = []

    def timed(owner, name, key):
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)

    sys.path.insert(0, str(ROOT / "bench"))
    for module, attribute, phase in TIMED[mode]:
        try:
            owner = importlib.import_module(module)
            *path, name = attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            getattr(owner, name)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{attribute}")
            continue
        timed(owner, name, phase)
    if mode == "ft":
        from ft.cli import main

        run_dir = Path(output_dir)
        code = main(["train", f"training.output_dir={run_dir.parent}", f"training.run_name={run_dir.name}", *overrides])
    else:
        importlib.import_module("baseline_trl").main([output_dir, *overrides])
        code = 0
    report = dict(spent=spent, total=time.perf_counter() - begin, missing=missing)
    print("PHASES " + json.dumps(report), flush=True)
    sys.exit(code)


def phases(report: dict, run_dir: Path, wall: float) -> dict:
    spent = dict(report["spent"])
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    runtime = next(row["train_runtime"] for row in history if "train_loss" in row)  # the run's summary row
    if "_build" in spent:  # ft: the trainer itself is what the build spends outside its timed parts
        parts = ("data rows (+ tokenizer)", "tokenized data (ft's cache)", "model load")
        spent["trainer (+ TRL's tokenization on a cache miss)"] = spent.pop("_build") - sum(
            spent.get(key, 0.0) for key in parts
        )
    spent["train(): set-up outside the loop"] = spent.pop("_train") - runtime
    spent["training loop (train_runtime)"] = runtime
    spent["other (checks, run dir, tokenizer, summary ...)"] = report["total"] - sum(spent.values())
    spent["interpreter start + exit"] = wall - report["total"]
    return spent


def run_child(mode: str, run_dir: Path, overrides: list[str]) -> dict:
    import subprocess

    command = [sys.executable, __file__, "--child", mode, str(run_dir), *overrides]
    start = time.perf_counter()
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in result.stdout.splitlines() if line.startswith("PHASES ")]
    if result.returncode != 0 or not lines:
        sys.exit(f"bench: {mode} failed:\n{result.stderr[-3000:]}")
    report = json.loads(lines[-1][len("PHASES ") :])
    if report["missing"]:
        print(f"{mode}: not timed (moved or renamed): {', '.join(report['missing'])}", flush=True)
    out = phases(report, run_dir, wall)
    out["whole command (wall)"] = wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the runs; unset: torch's default")
    args, overrides = parser.parse_known_args()
    use_threads(args.threads)
    if args.child:
        return child(*args.child, overrides)
    overrides = [f"training.max_steps={args.steps}", *BENCH_OVERRIDES, *overrides]
    work = Path(tempfile.mkdtemp(prefix="ft-bench-phases-"))
    runs = {"ft": [], "baseline": []}
    for repeat in range(args.repeats):
        for mode in ("ft", "baseline") if repeat % 2 == 0 else ("baseline", "ft"):
            runs[mode].append(run_child(mode, work / f"{mode}-{repeat}", overrides))
            print(f"{mode} {repeat + 1}: {runs[mode][-1]['whole command (wall)']:.1f} s wall", flush=True)
    rows = []
    for name in ORDER + ["whole command (wall)"]:
        ft, base = (median([run.get(name, 0.0) for run in runs[mode]]) for mode in ("ft", "baseline"))
        rows.append([name, ft, base, ft - base])
    print()
    print(table(["phase", "ft s", "baseline s", "ft - baseline s"], rows))
    print(f"\nmedians of {args.repeats} run(s) each, alternating; overrides: {' '.join(overrides)}")


if __name__ == "__main__":
    main()
