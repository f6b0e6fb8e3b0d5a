"""Load a finished run back: its resolved config, its tokenizer (with the chat template it was
trained with) and its model — base + adapter, or a full / merged model directory.

The base model comes from the run's config.yaml (`model.name_or_path`; `tiny` is re-resolved to the
local cache), so a run dir moved to another machine still finds a hub base.
"""

from pathlib import Path

from ft.config import registry
from ft.errors import FtError
from ft.run import rundir


def check_run_dir(run_dir) -> Path:
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise FtError(f"run_dir={run_dir}: no such directory (pass the directory a training run printed)")
    if not any((path / name).is_file() for name in (rundir.ADAPTER_CONFIG, rundir.MODEL_CONFIG, rundir.LORA_WEIGHTS)):
        raise FtError(f"run_dir={run_dir} holds no adapter_config.json or config.json: is the training finished?")
    return path


def load_config(run_dir: Path):
    """The run's config.yaml as the typed FtConfig (keys added to the schema later get defaults)."""
    from ft.config import saved
    from ft.rules import tasks

    path = Path(run_dir) / rundir.CONFIG
    root = registry.config_class()
    if not path.is_file() and not is_adapter(run_dir):  # e.g. a merged model copied elsewhere
        cfg = root()
    elif not path.is_file():
        raise FtError(f"{path} is missing: ft needs the run's resolved config to know its base model and data")
    else:
        cfg = saved.load(path)
        _experts_as_trained(cfg, path)
    tasks.check_sections(cfg, registry.get(cfg.task))
    return cfg


def _experts_as_trained(cfg, path: Path) -> None:
    """A run saved before peft.quantize_experts existed trained its MoE experts in full precision."""
    from omegaconf import OmegaConf

    if "quantize_experts" not in (OmegaConf.load(path).get("peft") or {}):
        cfg.peft.quantize_experts = False


def is_adapter(run_dir: Path) -> bool:
    return (Path(run_dir) / rundir.ADAPTER_CONFIG).is_file()


def base_model_path(cfg) -> str:
    from ft import models

    return models.resolve_path(cfg.model)


def load_tokenizer(run_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(run_dir: Path, cfg, device_map="auto", dequantize: bool = False):
    """The trained model in eval mode, placed by Accelerate's big-model loading (device_map): the
    base as configured — 4-bit/8-bit for QLoRA, as in training, unless `dequantize` — with the saved
    adapter; or the directory itself for a full fine-tune or a merged model."""
    import torch
    from transformers import AutoModelForCausalLM

    from ft import models
    from ft.models import experts

    if registry.get(cfg.task).head == "sequence_classification":
        raise FtError(
            f"{run_dir} is a reward model (task={cfg.task}): it scores answers and has no language-model head to "
            f"generate with; load it with AutoModelForSequenceClassification (num_labels=1) and PeftModel"
        )
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if cfg.model.dtype != "auto":
        dtype = getattr(torch, cfg.model.dtype)
    if not is_adapter(run_dir):  # a full fine-tune or a merged model: the directory is the model
        return AutoModelForCausalLM.from_pretrained(
            run_dir, dtype=dtype, device_map=device_map, attn_implementation=cfg.model.attn_implementation
        ).eval()
    from peft import PeftModel, prepare_model_for_kbit_training

    quantization = models.quantization_config(cfg.peft, dtype)
    base = models.load_model(
        cfg.model, dtype, device_map=device_map, **({"quantization_config": quantization} if quantization else {})
    )
    if quantization is not None:  # the experts as training quantized them, then dequantized with the rest for a merge
        models.quantize_experts(base, cfg.peft)
    if quantization is not None and dequantize:
        experts.dequantize(base)
        base = base.dequantize(dtype=dtype)
    elif quantization is not None:
        models.disable_4bit_cpu_repack(base)
        # as in training: norms and embeddings upcast to fp32
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    model = PeftModel.from_pretrained(base, str(run_dir))
    if quantization is not None and not dequantize:
        _restore_saved_dtypes(model, Path(run_dir) / rundir.ADAPTER_WEIGHTS)
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
