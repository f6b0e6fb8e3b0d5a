"""The preprocessing cache: time to the first optimizer step of a run that tokenizes its data (a fresh
cache dir) vs the same run again (the cache built by the first), on a 20,000-example JSONL file.
Alternating pairs of 1-step `ft train` runs of the default recipe; each timed from the start of the
process (imports, config, tiny model, data conversion, tokenization or cache load, the trainer) to
its first loss log, written right after the first optimizer step. Reported as cached / first.

    python bench/cache.py [--examples 20000] [--repeats 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ENV, ROOT, median, table

sys.path.insert(0, str(ROOT / "src"))
from ft.data import synthetic  # noqa: E402  (the same rows the default recipe trains on)

parser = argparse.ArgumentParser()
parser.add_argument("--examples", type=int, default=20_000)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

work = Path(tempfile.mkdtemp(prefix="ft-bench-cache-"))
source = work / "data.jsonl"
rows = synthetic.generate(["add", "reverse", "upper", "sort"], args.examples, seed=0)
source.write_text("".join(json.dumps(row) + "\n" for row in rows))


def one_step(cache_dir: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ft",
        "train",
        f"data.source={source}",
        f"data.cache.dir={cache_dir}",
        "training.max_steps=1",
        "training.logging_steps=1",
        "training.eval_strategy=no",
        "training.eval_before_training=false",
        "training.save_strategy=no",
        "logging=none",
        f"training.output_dir={work / 'runs'}",
        f"training.run_name={name}",
    ]


def to_first_step(command: list[str]) -> float:
    """Seconds from the start of `command` to its first loss log (after the first optimizer step)."""
    start, first = time.perf_counter(), None
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if first is None and "'loss'" in line:
            first = time.perf_counter() - start
    if process.wait() != 0 or first is None:
        sys.exit(f"bench: {' '.join(command)} failed:\n{''.join(output)[-3000:]}")
    return first


table_rows = []
for pair in range(1, args.repeats + 1):
    cache_dir = work / f"cache{pair}"  # empty: the first run tokenizes, the second reuses
    cold = to_first_step(one_step(cache_dir, f"cold{pair}"))
    warm = to_first_step(one_step(cache_dir, f"warm{pair}"))
    table_rows.append([pair, cold, warm, warm / cold])
    print(f"pair {pair}: first {cold:.2f} s, cached {warm:.2f} s, ratio {warm / cold:.3f}", flush=True)
print()
print(f"{args.examples} examples ({source.stat().st_size / 1e6:.1f} MB JSONL), seconds to the first optimizer step:")
print(table(["pair", "first run s", "cached run s", "cached / first"], table_rows))
print(f"\nmedian cached / first = **{median([r[3] for r in table_rows]):.3f}**")
