"""`ft merge`: fold a run's adapter into its base model and save a standalone model.

A quantized (QLoRA) run is merged into its base *dequantized* to the run's dtype: the same weight
values the adapter was trained against, in bf16/fp32 — never into 4-bit weights, which would
re-quantize the sum and lose most of the update.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError
from ft.finish import loading
from ft.options import option
from ft.run import rundir


@dataclass(kw_only=True)
class MergeOptions:
    run_dir: str = option(help="the run directory `ft train` printed", metavar="DIR")
    out: str | None = option(None, help="where to save the merged model; unset: <run_dir>/merged", metavar="PATH")


def check_mergeable(run_dir: Path):
    """The run's config, if its adapter can be folded into the base; else FtError saying why not."""
    if not (run_dir / rundir.CONFIG).is_file():
        raise FtError(
            f"run_dir={run_dir} is not an ft run directory (no config.yaml): pass the directory `ft train` printed"
        )
    cfg = loading.load_config(run_dir)
    if cfg.peft.method == "none":
        raise FtError(
            f"nothing to merge: {run_dir} is a full fine-tune (peft.method=none) and already a standalone model; load "
            f"it with from_pretrained('{run_dir}')"
        )
    if cfg.peft.method == "llama_adapter":
        raise FtError(
            f"cannot merge a Llama-Adapter run ({run_dir}): its adaption prompts are extra attention inputs, not "
            f"weight updates; load it with PeftModel.from_pretrained(base, '{run_dir}')"
        )
    if not (run_dir / rundir.ADAPTER_CONFIG).is_file():
        raise FtError(f"{run_dir} has no saved adapter (adapter_config.json): did the run finish?")
    return cfg


def merge_into(run_dir: Path, cfg, out: Path):
    """Save the merged model and the tokenizer (chat template, generation config's stop ids) to out;
    return (model, tokenizer)."""
    from transformers import AutoTokenizer

    model = loading.load_model(run_dir, cfg, device_map=None, dequantize=True).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _keep_tokenizer_class(cfg, out / "tokenizer_config.json")
    return model, tokenizer


def _keep_tokenizer_class(cfg, saved: Path) -> None:
    """The base's own tokenizer_class in the merged tokenizer_config.json: transformers 5 writes its
    backend's name instead, and readers such as llama.cpp's converter go by the original (Phi-4's
    GPT2Tokenizer)."""
    from transformers.utils import cached_file

    try:
        base = cached_file(loading.base_model_path(cfg), "tokenizer_config.json", revision=cfg.model.revision)
        tokenizer_class = json.loads(Path(base).read_text()).get("tokenizer_class") if base else None
    except (OSError, ValueError):
        return
    if tokenizer_class:
        saved.write_text(json.dumps(json.loads(saved.read_text()) | {"tokenizer_class": tokenizer_class}, indent=2))


def merge(options: MergeOptions, merge_into=merge_into) -> Path:
    """Write options.out: the base with the adapter folded in, plus the tokenizer, as safetensors.
    Written to a temporary directory first, renamed when complete. `merge_into(run_dir, cfg, out)`: what
    is merged and saved (a vision-language run's own saves its model class and processor)."""
    run_dir = loading.check_run_dir(options.run_dir)
    cfg = check_mergeable(run_dir)
    out = Path(options.out).expanduser() if options.out else run_dir / rundir.MERGED
    if out.exists():
        raise FtError(f"{out} already exists: choose another out=PATH or remove it")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        merge_into(run_dir, cfg, tmp)
        os.rename(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FtError(f"cannot write {out} ({e.strerror}): choose a writable out=PATH") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
