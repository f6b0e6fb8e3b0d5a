"""ft vs the hand-written TRL baseline (bench/baseline_trl.py), which takes its hyperparameters from the
same resolved config (the default recipe plus the overrides below), so both do the same training.
Alternating runs (which goes first rotates from round to round), per round: tokens/s of the
training loop and the wall time of the whole command, and their ratios. Goal: median tokens/s
ft/baseline >= 0.98. The whole command's ratio is reported beside it: ft's end of run (final eval,
exact-match report, loss plot, model card) is work the baseline does not do; bench/phases.py breaks it down.

    python bench/overhead.py [--pairs 5] [--steps 60] [--threads N] [--also key=value[,key=value]] ...

--also: one more ft run in every round with these overrides, e.g. --also training.report_exact_match=false
(repeatable); each is compared with the same round's baseline. First, unless
--no-warmup, one untimed 1-step ft run builds the tiny model and fills ft's tokenized-data cache, as
every run after a user's first finds them.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, median, run, table, tokens_per_second, use_threads

BENCH_OVERRIDES = [
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.save_strategy=no",
    "logging=none",
]


def train_runtime(run_dir: Path) -> float:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return next(row["train_runtime"] for row in history if "train_loss" in row)  # the run's summary row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="another ft run in every round, with these overrides (repeatable)",
    )
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the runs; unset: torch's default")
    args = parser.parse_args()
    use_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="ft-bench-overhead-"))
    overrides = [f"training.max_steps={args.steps}", *BENCH_OVERRIDES]
    ft = [sys.executable, "-m", "ft", "train", f"training.output_dir={work}"]
    variants = {"ft": [], **{f"ft {spec}": spec.split(",") for spec in args.also}}
    if not args.no_warmup:
        run(ft + [*BENCH_OVERRIDES, "training.max_steps=1", "training.run_name=warmup"])

    rows, speed, wall = [], {name: [] for name in variants}, {name: [] for name in variants}
    for pair in range(args.pairs):
        dirs = {
            "baseline": work / f"baseline-{pair}",
            **{name: work / f"v{i}-{pair}" for i, name in enumerate(variants)},
        }
        commands = {
            "baseline": [sys.executable, str(ROOT / "bench" / "baseline_trl.py"), str(dirs["baseline"]), *overrides],
            **{
                name: ft + [*overrides, *extra, f"training.run_name={dirs[name].name}"]
                for name, extra in variants.items()
            },
        }
        first = pair % len(commands)  # who goes first rotates from round to round
        order = list(commands)[first:] + list(commands)[:first]
        seconds = {name: run(commands[name]) for name in order}
        base_tps = tokens_per_second(dirs["baseline"] / "trainer_state.json")
        base_out = seconds["baseline"] - train_runtime(dirs["baseline"])
        for name in variants:
            tps = tokens_per_second(dirs[name] / "trainer_state.json")
            speed[name].append(tps / base_tps)
            wall[name].append(seconds[name] / seconds["baseline"])
            out = seconds[name] - train_runtime(dirs[name])
            rows.append(
                [pair + 1, name, tps, base_tps, speed[name][-1], seconds[name], seconds["baseline"]]
                + [wall[name][-1], out, base_out]
            )
            print(
                f"pair {pair + 1} ({name}): tokens/s {tps:.0f} vs {base_tps:.0f} (ratio {speed[name][-1]:.3f}); "
                f"whole command {seconds[name]:.1f} s vs {seconds['baseline']:.1f} s (ratio {wall[name][-1]:.3f})",
                flush=True,
            )

    headers = ["pair", "run", "tokens/s", "baseline tokens/s", "ratio", "wall s", "baseline wall s", "wall ratio"]
    print()
    print(table(headers + ["s outside the loop", "baseline s outside the loop"], rows))
    print()
    for name in variants:
        verdict = "met" if median(speed[name]) >= 0.98 else "MISSED"
        print(
            f"{name}: median tokens/s ratio to the baseline {median(speed[name]):.3f} (goal >= 0.98: {verdict}); "
            f"median whole-command wall ratio {median(wall[name]):.3f}"
        )
    print(f"{args.pairs} rounds of {args.steps} steps per run, order rotating; overrides: {' '.join(overrides)}")


if __name__ == "__main__":
    main()
