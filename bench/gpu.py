"""What only a GPU shows (issue: on a lent GPU), with random weights built from config and no network.
Each part writes its rows as it finishes, so a run cut short keeps what it measured.

  qlora7b   recipe=qlora_mistral's settings on a Mistral-7B-shaped model (4-bit NF4, LoRA r=16 on all
            linear layers, bf16, activation checkpointing) at seq 2048: tokens/s and peak memory, ft vs
            the plain TRL + PEFT script a user writes (`plain_trl` below), same settings, in two alternating
            pairs, plain first (only the second pair compares warm with warm)
  lora1b    a ~1.1B Llama (TinyLlama shape), LoRA and QLoRA: ft's best settings (packing, flash-attn if
            installed, Liger if it loads) vs plain padded sdpa; tokens/s, MFU, peak memory
  fsdp      `python -m ft train distributed=fsdp` (LoRA) and `distributed=fsdp_qlora` (QLoRA) as launched
            processes on the GPU(s), sdpa attention: the saved adapter is non-empty and finite; then one
            step each with flash_attention_2 (if flash-attn is installed) and Liger (if liger-kernel is)
  image     text-to-image LoRA steps in fp16 and bf16 (the VAE in fp32), tiny-sd and an SD-1.5-shaped
            pipeline (UNet 860M, CLIP-L-sized text encoder, SD VAE) at 512 px: every loss finite
  export    the default recipe trained on the GPU, then `ft export` (GGUF q8_0) with its parity check
  estimate  `ft estimate device=cuda` against the peak torch allocated in the same run, on the ~1.1B Llama
            (LoRA, QLoRA) and a 4-layer one (full fine-tune), packed batches of exactly the counted shape
  flow      tiny Flux and SD3 LoRA steps in bf16, and Flux with `peft=qlora` (the transformer in NF4 through
            diffusers' BitsAndBytesConfig, refused on a CPU): every loss finite, the LoRA saved

    python bench/gpu.py [--parts qlora7b,fsdp,...] [--out results.md]   # on the GPU machine
    python bench/gpu.py --tiny                                           # the same code on a CPU, tiny shapes
"""

import argparse
import dataclasses
import gc
import importlib.util
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402

from ft import config  # noqa: E402
from ft.config import schema  # noqa: E402
from ft.data import synthetic  # noqa: E402
from ft.models import tiny  # noqa: E402
from ft.training.launch import train  # noqa: E402

PARTS = ["qlora7b", "fsdp", "image", "export", "lora1b", "estimate", "flow"]
parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="tiny shapes, runs on a CPU (a smoke test)")
parser.add_argument("--steps", type=int, default=None)
parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}; in this order by default")
parser.add_argument("--out", default=None, help="also append the result rows (markdown) to this file")
args = parser.parse_args()
cuda = torch.cuda.is_available()
if not cuda and not args.tiny:
    sys.exit("bench/gpu.py needs a CUDA GPU; use --tiny to run the same path on a CPU")
unknown = set(args.parts.split(",")) - set(PARTS)
if unknown:
    sys.exit(f"bench/gpu.py: unknown --parts {sorted(unknown)}; choose from {PARTS}")

SEQ = 128 if args.tiny else 2048
STEPS = args.steps or (3 if args.tiny else 8)
LLAMA_1B = dict(
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4
)
MISTRAL_7B = dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8
)
TINY = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
work = Path(tempfile.mkdtemp(prefix="ft-bench-gpu-"))
DEVICE = torch.cuda.get_device_name() if cuda else "CPU (--tiny smoke run)"


def report(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")


def free() -> None:
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


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
    free()
    return path, params


def documents(n: int) -> Path:
    """Text documents of skewed length (packing has something to do)."""
    rng = random.Random(0)
    path = work / "docs.jsonl"
    with path.open("w") as f:
        for _ in range(n):
            length = rng.choice([40, 80, 200, 600, 1200]) * (1 if not args.tiny else 0.1)
            f.write(json.dumps({"text": " ".join(rng.choice(synthetic.WORDS) for _ in range(int(length) + 5))}) + "\n")
    return path


def text_overrides(name: str, model_path: Path, data: Path, batch: int) -> list[str]:
    return [
        f"model.name_or_path={model_path}",
        f"data.source={data}",
        "data.format=text",
        "data.eval_size=0",
        "data.cache.enabled=false",
        f"training.max_length={SEQ}",
        f"training.max_steps={STEPS}",
        f"training.per_device_train_batch_size={batch}",
        "training.gradient_accumulation_steps=1",
        "training.eval_strategy=no",
        "training.save_strategy=no",
        "logging=none",
        "training.logging_steps=1",
        f"training.output_dir={work}",
        f"training.run_name={name}",
    ]


def measured(history: list[dict], runtime: float) -> tuple[float, float]:
    """(tokens/s over the trainer's runtime, peak GiB allocated) of the run that just ended."""
    tokens = max(row.get("num_tokens", 0) for row in history)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return tokens / runtime, peak


def ft_run(overrides: list[str]) -> tuple[float, float]:
    free()
    result = train(config.compose(overrides))
    history = result.trainer.state.log_history
    if "train_runtime" not in result.metrics:
        raise RuntimeError(f"the ft run ended without train_runtime in its metrics: {result.metrics}")
    tokens_per_s, peak = measured(history, result.metrics["train_runtime"])
    # ft's throughput callback resets the peak at every log: the run's peak is the largest one logged
    peak = max([peak] + [row.get("gpu_peak_memory_gb", 0) for row in history])
    del result
    free()
    return tokens_per_s, peak


def plain_trl(cfg, output_dir: Path) -> tuple[float, float]:
    """The script a user writes by hand for the same run: BitsAndBytesConfig, prepare_model_for_kbit_training,
    LoraConfig, SFTConfig, SFTTrainer, with every value copied from ft's resolved config `cfg`."""
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    free()
    t, p, o = cfg.training, cfg.peft, cfg.optim
    dtype = torch.bfloat16 if cuda else torch.float32
    quantization = None
    if p.load_in_4bit:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=p.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=p.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path, dtype=dtype, quantization_config=quantization)
    checkpointing = bool(t.activation_checkpointing if t.activation_checkpointing is not None else cuda)
    if quantization is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    trainer = SFTTrainer(
        model=model,
        processing_class=AutoTokenizer.from_pretrained(cfg.model.name_or_path),
        train_dataset=load_dataset("json", data_files=cfg.data.source, split="train"),
        peft_config=LoraConfig(
            task_type="CAUSAL_LM",
            r=p.r,
            lora_alpha=p.lora_alpha,
            lora_dropout=p.lora_dropout,
            target_modules=p.target_modules if isinstance(p.target_modules, str) else list(p.target_modules),
        ),
        args=SFTConfig(
            output_dir=str(output_dir),
            max_steps=t.max_steps,
            per_device_train_batch_size=t.per_device_train_batch_size,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            learning_rate=t.learning_rate,
            lr_scheduler_type=t.lr_scheduler_type,
            warmup_steps=t.warmup_steps,
            optim=o.name,
            max_length=t.max_length,
            packing=t.packing,
            bf16=cuda,
            use_cpu=not cuda,
            activation_checkpointing=checkpointing,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
        ),
    )
    runtime = trainer.train().metrics["train_runtime"]
    speed = measured(trainer.state.log_history, runtime)
    del trainer, model
    free()
    return speed


def part_qlora7b() -> None:
    model, params = build("mistral-7b-shape", TINY if args.tiny else MISTRAL_7B, "mistral")
    data = documents(200 if args.tiny else 2000)
    overrides = ["recipe=qlora_mistral", *text_overrides("qlora7b", model, data, batch=2 if args.tiny else 4)]
    if not cuda:  # the recipe's 4-bit base and bf16 need a GPU; the CPU smoke run keeps the rest
        overrides += ["peft=lora", "peft.r=16", "peft.lora_alpha=32", "peft.target_modules=all-linear"]
        overrides += ["training.precision=fp32", "training.activation_checkpointing=false"]
    rows = []
    # Alternating pairs, plain first. Padded batches have a new shape at every step, and the first run of a
    # process pays for each new shape (kernel selection, allocator growth) that a later run of the very same
    # batches gets for free: only the second pair compares warm with warm.
    for pair in (1, 2):
        plain_speed, plain_peak = plain_trl(config.compose(overrides), work / f"qlora7b-plain-{pair}")
        ft_speed, ft_peak = ft_run([*overrides, f"training.run_name=qlora7b-ft-{pair}"])
        rows.append(
            f"| {pair} | {plain_speed:.0f} | {ft_speed:.0f} | {ft_speed / plain_speed:.3f} "
            f"| {plain_peak:.2f} | {ft_peak:.2f} |"
        )
    report(
        "",
        f"### recipe=qlora_mistral settings on a Mistral-7B-shaped model ({params / 1e9:.2f}B params), {DEVICE}",
        f"seq {SEQ}, batch {2 if args.tiny else 4}, {STEPS} steps; tokens/s over the trainer's runtime",
        "",
        "| pair | plain TRL + PEFT tokens/s | ft tokens/s | ft / plain | plain peak GiB | ft peak GiB |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    )


def part_lora1b() -> None:
    peak_tflops = matmul_peak_tflops()
    model, params = build("llama-1b", TINY if args.tiny else LLAMA_1B, "llama")
    data = documents(400 if args.tiny else 4000)
    fields = {f.name for f in dataclasses.fields(schema.TrainingConfig)}
    rows = []
    for peft in ["lora", "qlora"] if cuda else ["lora"]:
        for best in (False, True):
            name = f"{peft}-{'best' if best else 'plain'}"
            overrides = [f"peft={peft}", "peft.modules_to_save=null"]
            overrides += text_overrides(name, model, data, batch=2 if args.tiny else 8)
            if best:
                overrides.append("training.packing=true")
                if cuda and importlib.util.find_spec("flash_attn"):
                    overrides.append("model.attn_implementation=flash_attention_2")
                if cuda and importlib.util.find_spec("liger_kernel") and "use_liger_kernel" in fields:
                    overrides.append("training.use_liger_kernel=true")
            speed, peak = ft_run(overrides)
            mfu = speed * 4 * params / (peak_tflops * 1e12)
            settings = " ".join(o for o in overrides if "packing" in o or "attn" in o or "liger" in o) or "-"
            label = f"{peft} {'ft best' if best else 'plain'}"
            rows.append(f"| {label} | {speed:.0f} | {100 * mfu:.1f}% | {peak:.2f} | {settings} |")
    report(
        "",
        f"### ~1.1B Llama, seq {SEQ}, {STEPS} steps, {DEVICE}; matmul peak {peak_tflops:.3g} TFLOP/s measured",
        "",
        "| run | tokens/s | MFU | peak GiB | settings |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    )


def ft_command(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m ft ARGUMENTS` as its own process, with this checkout's ft."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "ft", *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def ft_process(name: str, overrides: list[str], timeout: int = 300) -> tuple[str, Path]:
    """`python -m ft train ...` as its own process; ('ok' or the last error line, run dir)."""
    try:
        done = ft_command(
            "train", *overrides, f"training.output_dir={work}", f"training.run_name={name}", timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s", work / name
    (work / f"{name}.log").write_text(done.stdout + done.stderr)
    print(f"--- {name}: the end of its output\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", flush=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return f"exit {done.returncode}: {lines[-1] if lines else ''}"[:300], work / name
    return "ok", work / name


def adapter_summary(run_dir: Path) -> str:
    """Tensors and bytes of the saved adapter, and whether every value is finite and not all zero."""
    from safetensors.torch import load_file

    files = list(run_dir.glob("adapter_model.safetensors")) + list(run_dir.glob("pytorch_lora_weights.safetensors"))
    if not files:
        return "no adapter file; the run dir holds " + ", ".join(sorted(p.name for p in run_dir.iterdir()))
    tensors = load_file(files[0])
    values = torch.cat([t.float().flatten() for t in tensors.values()]) if tensors else torch.zeros(0)
    finite = bool(torch.isfinite(values).all()) if values.numel() else False
    nonzero = int((values != 0).sum())
    return f"{len(tensors)} tensors, {files[0].stat().st_size:,} bytes, finite={finite}, non-zero values {nonzero:,}"


def part_fsdp() -> None:
    model, _ = build("llama-small", TINY if args.tiny else dict(LLAMA_1B, num_hidden_layers=4), "llama")
    data = documents(200)
    common = [
        f"model.name_or_path={model}",
        f"data.source={data}",
        "data.format=text",
        "data.eval_size=0",
        "peft.modules_to_save=null",  # FSDP does not average a fully trained lm_head's gradient (ft refuses it)
        f"training.max_length={min(SEQ, 512)}",
        "training.max_steps=3",
        "training.per_device_train_batch_size=2",
        "training.save_strategy=no",
        "logging=none",
        "training.logging_steps=1",
    ]
    # FSDP needs GPUs: the CPU smoke run takes the same commands with distributed=single
    runs = [("fsdp-lora", ["peft=lora", "distributed=fsdp" if cuda else "distributed=single"])]
    if cuda:
        runs.append(("fsdp-qlora", ["peft=qlora", "distributed=fsdp_qlora"]))
    # one step each with a switch (the runs above use sdpa, the default)
    if importlib.util.find_spec("flash_attn"):
        runs.append(
            ("flash-attn-2", ["peft=lora", "training.max_steps=1", "model.attn_implementation=flash_attention_2"])
        )
    if importlib.util.find_spec("liger_kernel"):
        runs.append(("liger", ["peft=lora", "training.max_steps=1", "training.use_liger_kernel=true"]))
    rows = []
    for name, extra in runs:
        outcome, run_dir = ft_process(name, [*common, *extra])
        rows.append(f"| {' '.join(extra)} | {outcome} | {adapter_summary(run_dir) if outcome == 'ok' else '-'} |")
    if not importlib.util.find_spec("flash_attn"):
        rows.append("| model.attn_implementation=flash_attention_2 | not run: flash-attn is not installed | - |")
    table = ["| run | outcome | saved adapter |", "| --- | --- | --- |", *rows]
    report("", f"### Launched runs and switches, {DEVICE}", "", *table)


def sd15_shaped() -> Path:
    """An SD-1.5-shaped pipeline with random weights: the UNet's layout (860M), a CLIP-L-sized text encoder
    and SD's VAE, with the tiny pipeline's tokenizer (77 tokens)."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ft.tasks.text_to_image import tiny as tiny_diffusion

    tok = tiny_diffusion.tokenizer()
    tok.model_max_length = 77
    text = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD 1.x's layout
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text),
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    path = work / "sd15-shape"
    pipe.save_pretrained(path)
    return path


def image_row(cells: str, name: str, overrides: list[str]) -> str:
    """A text-to-image run as its own process, as a table row: `cells`, its losses, whether all are finite, the
    saved LoRA (or how the run failed)."""
    outcome, run_dir = ft_process(name, overrides)
    if outcome != "ok":
        return f"| {cells} | {outcome} | - | - |"
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    losses = [row["loss"] for row in history if "loss" in row]
    finite = all(math.isfinite(x) for x in losses)
    return f"| {cells} | {' '.join(f'{x:.4f}' for x in losses)} | {finite} | {adapter_summary(run_dir)} |"


def part_image() -> None:
    pipelines = [("tiny-sd", "tiny-sd", 16)]
    if not args.tiny:
        pipelines.append(("SD-1.5-shaped", str(sd15_shaped()), 512))
    rows = []
    for label, path, resolution in pipelines:
        for precision in ["fp16", "bf16"] if cuda else ["fp32"]:
            name = f"image-{label}-{precision}"
            overrides = [
                "recipe=tiny_sd_lora",
                f"model.name_or_path={path}",
                f"diffusion.resolution={resolution}",
                f"training.precision={precision}",
                "training.max_steps=3",
                "training.per_device_train_batch_size=1",
                "training.logging_steps=1",
                "diffusion.cache_latents=false",  # the VAE (fp32) encodes in the loop, in the run's autocast
                "data.synthetic.num_examples=4",
                "logging=none",
            ]
            rows.append(image_row(f"{label} | {precision}", name, overrides))
    report(
        "",
        f"### Text-to-image LoRA steps (VAE in fp32, UNet and text encoder in the run's precision), {DEVICE}",
        "",
        "| pipeline | precision | losses | all finite | saved LoRA |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    )


def part_export() -> None:
    run_dir = work / "export-run"
    outcome, _ = ft_process("export-run", ["training.max_steps=60", "logging=none"])
    if outcome != "ok":
        report("", f"### GGUF export of a run trained on {DEVICE}", "", f"training: {outcome}")
        return
    done = ft_command("export", f"run_dir={run_dir}", "quant=q8_0", "prompts=16")
    found = next(iter(sorted(run_dir.rglob("parity.json"))), None)  # out= defaults to a folder in the run dir
    parity = json.loads(found.read_text()) if found else {}
    summary = {key: value for key, value in parity.items() if key != "samples"}
    report(
        "",
        f"### GGUF export (q8_0) of the default recipe trained 60 steps on {DEVICE}",
        "",
        f"exit {done.returncode}; last line: {(done.stdout.strip().splitlines() or [''])[-1][:300]}",
        f"parity: {json.dumps(summary) if found else (done.stdout + done.stderr)[-2000:]}",
    )


def part_estimate() -> None:
    """Each run trains 2 steps as its own process, then `ft estimate` is asked about the same overrides."""
    big, _ = build("llama-1b", TINY if args.tiny else LLAMA_1B, "llama")
    small, _ = build("llama-small", TINY if args.tiny else dict(LLAMA_1B, num_hidden_layers=4), "llama")
    data = documents(400 if args.tiny else 2000)
    runs = {"lora": (big, ["peft=lora"]), "qlora": (big, ["peft=qlora"]), "full": (small, ["peft=none"])}
    rows = []
    for name, (model, peft) in runs.items():
        if name == "qlora" and not cuda:
            continue
        overrides = [*peft, "peft.modules_to_save=null", *text_overrides(f"estimate-{name}", model, data, batch=4)]
        overrides += ["training.packing=true", "training.max_steps=2"]  # full rows of max_length, as counted
        outcome, run_dir = ft_process(f"estimate-{name}", overrides)
        estimate = ft_command("estimate", *overrides, f"device={'cuda' if cuda else 'cpu'}")
        if outcome != "ok" or estimate.returncode != 0:
            rows.append(f"| {name} | {outcome} | exit {estimate.returncode}: {estimate.stderr[-200:]} | - | - |")
            continue
        key = "gpu_peak_memory_gb" if cuda else "cpu_peak_rss_gb"
        peak = json.loads((run_dir / "all_results.json").read_text())[key]
        printed = dict(re.findall(r"^  (\S.*?) +(\d+\.\d\d)(?:  |$)", estimate.stdout, re.MULTILINE))
        model_total = float(printed["model total"])
        rows.append(f"| {name} | {peak:.2f} | {model_total:.2f} | {model_total / peak:.2f} | {printed['total']} |")
    report(
        "",
        f"### `ft estimate` against the measured peak (seq {SEQ}, batch 4, packed), {DEVICE}",
        "",
        "| run | peak GiB allocated | estimated model total | estimated / peak | estimated total |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    )


def part_flow() -> None:
    runs = [("tiny-flux", "tiny_flux_lora", "lora"), ("tiny-sd3", "tiny_sd3_lora", "lora")]
    if cuda:
        runs.append(("tiny-flux", "tiny_flux_lora", "qlora"))
    rows = []
    for label, recipe, peft in runs:
        name = f"flow-{label}-{peft}"
        overrides = [
            f"recipe={recipe}",
            f"peft={peft}",
            f"training.precision={'bf16' if cuda else 'fp32'}",
            "training.max_steps=3",
            "training.logging_steps=1",
            "logging=none",
        ]
        rows.append(image_row(f"{label} | {peft}", name, overrides))
    report(
        "",
        f"### Flux / SD3 LoRA steps (flow matching), {'bf16' if cuda else 'fp32'}, {DEVICE}",
        "",
        "| pipeline | peft | losses | all finite | saved LoRA |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    )


report(f"\n## bench/gpu.py --parts {args.parts} on {DEVICE}, torch {torch.__version__}")
for part in args.parts.split(","):
    started = time.time()
    try:
        globals()[f"part_{part}"]()
    except Exception as e:  # one part failing must not lose the others' numbers
        import traceback

        traceback.print_exc()
        report("", f"### {part}: FAILED: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    report(f"({part}: {time.time() - started:.0f} s)")
