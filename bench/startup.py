"""Start-up: wall time of `python -m ft --help`, `python -m ft recipes`, and of a 1-step run of the
default recipe (imports, config, tiny model load, data, one optimizer step, final save), median of 5.
Goals: --help < 1.0 s, recipes < 1.5 s.

    python bench/startup.py [--repeats 5]
"""

import argparse
import sys
import tempfile

from common import median, run, table

parser = argparse.ArgumentParser()
parser.add_argument("--repeats", type=int, default=5)
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="ft-bench-startup-")
ft = [sys.executable, "-m", "ft"]
one_step = [
    "train",
    "training.max_steps=1",
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.save_strategy=no",
    "logging=none",
    f"training.output_dir={work}",
]
cases = [
    ("python -m ft --help", lambda i: ft + ["--help"], 1.0),
    ("python -m ft recipes", lambda i: ft + ["recipes"], 1.5),
    ("python -m ft train (1 step, default recipe)", lambda i: ft + one_step + [f"training.run_name=s{i}"], None),
    ("python -c pass (interpreter alone)", lambda i: [sys.executable, "-c", "pass"], None),
]
rows = []
for name, command, goal in cases:
    times = [run(command(i)) for i in range(args.repeats)]
    verdict = "" if goal is None else ("met" if median(times) < goal else "MISSED")
    rows.append([name, median(times), min(times), max(times), f"< {goal} s {verdict}" if goal else "-"])
    print(f"{name}: median {median(times):.3f} s", flush=True)
print()
print(table(["command", "median s", "min s", "max s", "goal"], rows))
