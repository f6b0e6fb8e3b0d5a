"""`ft merge`: fold a run's adapter into its base model and save a standalone model; and
`load_trained`, which rebuilds a run's trained model from its run directory.

A quantized (QLoRA) run is merged into its base *dequantized* to the run's dtype: the same weight
values the adapter was trained against, in bf16/fp32 — never into 4-bit weights, which would
re-quantize the sum and lose most of the update.
"""

import os
import shutil
from pathlib import Path

from ft import hardware, models
from ft.errors import FtError
from ft.schema import FtConfig


def load_run_config(run_dir: Path) -> FtConfig:
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FtError(f"run_dir={run_dir} is not an ft run directory (no config.yaml): pass the directory `ft train` printed")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FtConfig), OmegaConf.load(path)))


def load_trained(run_dir: Path, *, dequantize: bool = False):
    """The run's trained model: its base as configured (quantized for QLoRA unless `dequantize`)
    with the saved adapter, in eval mode; or the saved weights of a full fine-tune."""
    from peft import PeftModel, prepare_model_for_kbit_training

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hardware.detect()))
    if cfg.peft.method == "none":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(run_dir, dtype=dtype).eval()
    quantization = models.quantization_config(cfg.peft, dtype)
    base = models.load_model(cfg.model, dtype, **({"quantization_config": quantization} if quantization else {}))
    if quantization is not None and dequantize:
        base = base.dequantize(dtype=dtype)
    elif quantization is not None:  # as in training: norms and embeddings upcast to fp32
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    model = PeftModel.from_pretrained(base, str(run_dir))
    if quantization is not None and not dequantize:
        _restore_saved_dtypes(model, run_dir / "adapter_model.safetensors")
    return model.eval()


def _restore_saved_dtypes(model, adapter_file: Path) -> None:
    """TRL keeps QLoRA adapter weights in bf16 while training; PEFT upcasts them to fp32 on load.
    Put each back in the dtype it was saved (and trained) in, so the reloaded model computes the same."""
    import torch
    from safetensors import safe_open

    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    with safe_open(str(adapter_file), framework="pt") as f:
        saved = {key: f.get_slice(key).get_dtype() for key in f.keys()}
    for name, param in model.named_parameters():
        key = name.replace(".modules_to_save.default", "").replace(".default", "")
        dtype = dtypes.get(saved.get(key))
        if dtype is not None and param.dtype != dtype:
            param.data = param.data.to(dtype)


def merge(run_dir: Path, out: Path | None = None) -> Path:
    """Write <out> (default <run_dir>/merged): the base with the adapter folded in, plus the
    tokenizer, as safetensors. Written to a temporary directory first, renamed when complete."""
    run_dir = Path(run_dir).expanduser()
    cfg = load_run_config(run_dir)
    if cfg.peft.method == "none":
        raise FtError(f"nothing to merge: {run_dir} is a full fine-tune (peft.method=none) and already a standalone model; load it with from_pretrained('{run_dir}')")
    if cfg.peft.method == "llama_adapter":
        raise FtError(f"cannot merge a Llama-Adapter run ({run_dir}): its adaption prompts are extra attention inputs, not weight updates; load it with PeftModel.from_pretrained(base, '{run_dir}')")
    if not (run_dir / "adapter_config.json").is_file():
        raise FtError(f"{run_dir} has no saved adapter (adapter_config.json): did the run finish?")
    out = Path(out).expanduser() if out else run_dir / "merged"
    if out.exists():
        raise FtError(f"{out} already exists: choose another out=PATH or remove it")

    from transformers import AutoTokenizer

    model = load_trained(run_dir, dequantize=True).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        os.rename(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FtError(f"cannot write {out} ({e.strerror}): choose a writable out=PATH") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
