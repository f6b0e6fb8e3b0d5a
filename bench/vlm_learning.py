"""Vision-language runs that learn (issue 29): each tiny_vlm_* recipe trained as shipped on 2 CPU cores, and the
held-out exact match of its greedy answers to questions about drawn shapes (colour or shape, one word),
untrained (adapter off) vs trained, with the run's wall time.

    python bench/vlm_learning.py [--recipes tiny_vlm_gemma3,...] [key=value ...]

The extra key=value overrides go to every run (e.g. training.max_steps=50 for a quick look).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = ["tiny_vlm_gemma3", "tiny_vlm_llava", "tiny_vlm_smolvlm"]


def run(recipe: str, out: Path, overrides: list[str]) -> dict:
    start = time.perf_counter()
    command = [sys.executable, "-m", "ft", "train", f"recipe={recipe}", f"training.output_dir={out}"]
    done = subprocess.run([*command, f"training.run_name={recipe}", *overrides], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{recipe} failed:\n{done.stderr[-2000:]}")
    results = json.loads((out / recipe / "all_results.json").read_text())
    return {**results, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args, overrides = parser.parse_known_args()
    print("| recipe | exact match untrained | trained | gain (points) | eval loss untrained -> trained | wall |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as out:
        for recipe in args.recipes.split(","):
            r = run(recipe, Path(out), overrides)
            gain = 100 * (r["exact_match"] - r["base_exact_match"])
            print(
                f"| {recipe} | {100 * r['base_exact_match']:.0f}% | {100 * r['exact_match']:.0f}% | {gain:+.0f} | "
                f"{r['base_loss']:.2f} -> {r['eval_loss']:.2f} | {r['wall_s']:.0f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
