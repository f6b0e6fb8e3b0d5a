"""ft vs the hand-written TRL baseline (bench/baseline_trl.py) on the same model, data and
hyperparameters: alternating runs (A B A B ...), tokens/s of each and the ratio per pair.
Goal: median ft/baseline >= 0.98.

    python bench/overhead.py [--pairs 5] [--steps 60]
"""

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, median, run, table, tokens_per_second

parser = argparse.ArgumentParser()
parser.add_argument("--pairs", type=int, default=5)
parser.add_argument("--steps", type=int, default=60)
args = parser.parse_args()

work = Path(tempfile.mkdtemp(prefix="ft-bench-overhead-"))
rows, ratios = [], []
for pair in range(args.pairs):
    ft_dir = work / f"ft-{pair}"
    run(
        [
            sys.executable,
            "-m",
            "ft",
            "train",
            f"training.max_steps={args.steps}",
            "training.eval_strategy=no",
            "training.eval_before_training=false",
            "training.save_strategy=no",
            "logging=none",
            f"training.output_dir={work}",
            f"training.run_name=ft-{pair}",
        ]
    )
    base_dir = work / f"baseline-{pair}"
    run([sys.executable, str(ROOT / "bench" / "baseline_trl.py"), str(base_dir), str(args.steps)])
    ft_tps = tokens_per_second(ft_dir / "trainer_state.json")
    base_tps = tokens_per_second(base_dir / "trainer_state.json")
    ratios.append(ft_tps / base_tps)
    rows.append([pair + 1, ft_tps, base_tps, ft_tps / base_tps])
    print(
        f"pair {pair + 1}: ft {ft_tps:.0f} tok/s, baseline {base_tps:.0f} tok/s, ratio {ft_tps / base_tps:.3f}",
        flush=True,
    )

print()
print(table(["pair", "ft tokens/s", "baseline tokens/s", "ft / baseline"], rows))
verdict = "met" if median(ratios) >= 0.98 else "MISSED"
print(f"\nmedian ft/baseline = {median(ratios):.3f} (goal >= 0.98: {verdict}); {args.steps} steps per run")
