"""GPU throughput and memory (H100/H200 class), no network: a Llama-architecture ~1B model with
random weights (built from config, saved, reloaded — quantized for QLoRA), trained through ft's
own path. LoRA bf16 and QLoRA all-linear at seq 2048, ft's best settings (packing, flash-attn if
installed else sdpa, Liger if it loads) vs plain settings (padded batches, sdpa): tokens/s, MFU
(LoRA ~ 4 x params FLOPs per token, against the bf16 matmul peak measured here), peak memory; then
a Mistral-7B-shaped QLoRA run's peak memory at seq 2048.

    python bench/gpu.py            # on the GPU machine; a few minutes
    python bench/gpu.py --tiny     # the same code path end to end on a CPU, with tiny shapes
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ft import config  # noqa: E402
from ft.config import schema
from ft.data import synthetic
from ft.models import tiny
from ft.training.launch import train  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="tiny shapes, runs on a CPU (a smoke test)")
parser.add_argument("--steps", type=int, default=None)
args = parser.parse_args()
cuda = torch.cuda.is_available()
if not cuda and not args.tiny:
    sys.exit("bench/gpu.py needs a CUDA GPU; use --tiny to run the same path on a CPU")

SEQ = 128 if args.tiny else 2048
STEPS = args.steps or (3 if args.tiny else 20)
LLAMA_1B = dict(
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4
)
MISTRAL_7B = dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8
)
TINY = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
work = Path(tempfile.mkdtemp(prefix="ft-bench-gpu-"))


def matmul_peak_tflops() -> float:
    n, dtype = (8192, torch.bfloat16) if cuda else (512, torch.float32)
    a = torch.randn(n, n, dtype=dtype, device="cuda" if cuda else "cpu")
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def build(name: str, shape: dict, architecture: str) -> tuple[Path, int]:
    """Random-weight model + ft's tiny tokenizer, saved where from_pretrained can reload it."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure(schema.TinyModelConfig()))
    cfg = AutoConfig.for_model(
        architecture,
        vocab_size=len(tokenizer),
        max_position_embeddings=max(SEQ, 4096),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **shape,
    )
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if cuda else torch.float32)
    path = work / name
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    if cuda:
        torch.cuda.empty_cache()
    return path, params


def documents(n: int) -> Path:
    """Text documents of skewed length (packing has something to do)."""
    rng = random.Random(0)
    path = work / "docs.jsonl"
    words = synthetic.WORDS
    with path.open("w") as f:
        for _ in range(n):
            length = rng.choice([40, 80, 200, 600, 1200]) * (1 if not args.tiny else 0.1)
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(int(length) + 5))}) + "\n")
    return path


def run(name: str, model_path: Path, peft: str, best: bool, batch: int, extra=()) -> dict:
    overrides = [
        f"model.name_or_path={model_path}",
        f"peft={peft}",
        f"data.source={data}",
        "data.format=text",
        "data.eval_size=0",
        f"training.max_length={SEQ}",
        f"training.max_steps={STEPS}",
        f"training.per_device_train_batch_size={batch}",
        "training.eval_strategy=no",
        "training.save_strategy=no",
        "logging=none",
        "training.logging_steps=1",
        f"training.output_dir={work}",
        f"training.run_name={name}",
        "peft.modules_to_save=null",
        *extra,
    ]
    fields = {f.name for f in dataclasses.fields(schema.TrainingConfig)}
    if best:
        overrides.append("training.packing=true")
        if cuda and importlib.util.find_spec("flash_attn"):
            overrides.append("model.attn_implementation=flash_attention_2")
        if cuda and importlib.util.find_spec("liger_kernel") and "use_liger_kernel" in fields:
            overrides.append("training.use_liger_kernel=true")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = train(config.compose(overrides))
    history = result.trainer.state.log_history
    tokens = max(row.get("num_tokens", 0) for row in history)
    tokens_per_s = tokens / result.metrics["train_runtime"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del result
    if cuda:
        torch.cuda.empty_cache()
    return {
        "tokens_per_s": tokens_per_s,
        "peak_gib": peak,
        "settings": [o for o in overrides if "packing" in o or "attn" in o or "liger" in o],
    }


peak_tflops = matmul_peak_tflops()
data = documents(400 if args.tiny else 4000)
qlora = "qlora" if "qlora" in config.group_options("peft") else None
model_1b, params_1b = build("llama-1b", TINY if args.tiny else LLAMA_1B, "llama")
rows = []
for peft in ["lora"] + ([qlora] if qlora else []):
    for best in (False, True):
        label = f"{peft} {'ft best' if best else 'plain'}"
        m = run(label.replace(" ", "-"), model_1b, peft, best, batch=2 if args.tiny else 8)
        mfu = m["tokens_per_s"] * 4 * params_1b / (peak_tflops * 1e12)
        rows.append(
            [
                label,
                f"{m['tokens_per_s']:.0f}",
                f"{100 * mfu:.1f}%",
                f"{m['peak_gib']:.2f}",
                " ".join(m["settings"]) or "-",
            ]
        )
        print(
            f"{label}: {m['tokens_per_s']:.0f} tokens/s, MFU {100 * mfu:.1f}%, peak {m['peak_gib']:.2f} GiB", flush=True
        )

if qlora:
    model_7b, params_7b = build("mistral-7b-shape", TINY if args.tiny else MISTRAL_7B, "mistral")
    m = run("mistral-7b-qlora", model_7b, qlora, best=True, batch=1, extra=["training.activation_checkpointing=true"])
    rows.append(
        [
            f"Mistral-7B-shaped {qlora} (bs1, ckpt)",
            f"{m['tokens_per_s']:.0f}",
            "-",
            f"{m['peak_gib']:.2f}",
            " ".join(m["settings"]),
        ]
    )

device = torch.cuda.get_device_name() if cuda else "CPU (--tiny smoke run)"
print(
    f"\n{device}; matmul peak {peak_tflops:.3g} TFLOP/s measured; 1B-shape model {params_1b:,} params; seq {SEQ}; "
    f"{STEPS} steps"
)
print("| run | tokens/s | MFU | peak GiB | settings |\n| --- | --- | --- | --- | --- |")
for row in rows:
    print("| " + " | ".join(row) + " |")
