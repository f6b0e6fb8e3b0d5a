"""Packing on a length-skewed dataset (many short conversations, a few long ones): the fraction of
token slots that hold real (non-pad) tokens, and real tokens trained per second, packed vs padded.
Goals: packed >= 95% real slots and >= 2x the real-token throughput of padded batches.

    python bench/packing.py [--steps 15]
"""

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from common import ENV, ROOT, table

os.environ.update(ENV)
sys.path.insert(0, str(ROOT / "src"))

from ft import config  # noqa: E402
from ft.data import synthetic
from ft.tasks.sft import build_trainer  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=15)
parser.add_argument("--examples", type=int, default=600)
parser.add_argument("--batch", type=int, default=8, help="padded batch size (examples per step)")
parser.add_argument(
    "--packed-batch",
    type=int,
    default=1,
    help="packed rows per step; bfd packing flattens them into ONE sequence, so without "
    "flash-attn (varlen) attention costs grow with (rows x max_length)^2",
)
args = parser.parse_args()

work = Path(tempfile.mkdtemp(prefix="ft-bench-packing-"))
rng = random.Random(0)
rows = []
for i, row in enumerate(synthetic.generate(["add", "reverse", "upper", "sort"], args.examples, seed=1)):
    if i % 10 == 0:  # one in ten is long: a paragraph to repeat back
        text = " ".join(rng.choice(synthetic.WORDS) for _ in range(rng.randint(60, 110)))
        row = {"messages": [{"role": "user", "content": f"Repeat: {text}"}, {"role": "assistant", "content": text}]}
    rows.append(row)
data_file = work / "skewed.jsonl"
data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))


def measure(packing: bool) -> dict:
    batch = args.packed_batch if packing else args.batch
    cfg = config.compose(
        [
            f"data.source={data_file}",
            "data.format=messages",
            "data.eval_size=0",
            f"training.packing={str(packing).lower()}",
            "training.max_length=512",
            f"training.per_device_train_batch_size={batch}",
            f"training.max_steps={args.steps}",
            "training.eval_strategy=no",
            "training.save_strategy=no",
            "logging=none",
            f"training.output_dir={work}",
            f"training.run_name={'packed' if packing else 'padded'}",
        ]
    )
    trainer = build_trainer(cfg, work / ("packed" if packing else "padded"))
    pad = trainer.processing_class.pad_token_id
    slots = real = 0
    for _, batch in zip(range(args.steps), trainer.get_train_dataloader()):
        slots += batch["input_ids"].numel()
        real += int((batch["input_ids"] != pad).sum())
    runtime = trainer.train().metrics["train_runtime"]  # the same first batches (same seed and sampler)
    return {"real_fraction": real / slots, "real_tokens_per_s": real / runtime, "real_tokens": real, "runtime": runtime}


padded, packed = measure(False), measure(True)
print(
    table(
        ["batches", "real token slots", "real tokens / s", "real tokens", "train s"],
        [
            [name, f"{m['real_fraction']:.1%}", m["real_tokens_per_s"], m["real_tokens"], m["runtime"]]
            for name, m in (
                (f"padded, {args.batch} examples/step", padded),
                (f"packed (bfd), {args.packed_batch} x 512-token row(s)/step", packed),
            )
        ],
    )
)
speedup = packed["real_tokens_per_s"] / padded["real_tokens_per_s"]
print(
    f"\npacked real slots {packed['real_fraction']:.1%} (goal >= 95%: "
    f"{'met' if packed['real_fraction'] >= 0.95 else 'MISSED'}); "
    f"real-token throughput x{speedup:.2f} (goal >= 2x: {'met' if speedup >= 2 else 'MISSED'})"
)
