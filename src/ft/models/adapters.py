"""PEFT configs from the `peft` group, and the rules that need the model to check.

TRL's SFTTrainer does the wrapping (get_peft_model). One small builder per PEFT type; DoRA, rsLoRA,
PiSSA, LoRA+ and QLoRA are LoRA with flags (see ft.config.schema.PeftConfig).
"""

import shutil
from pathlib import Path

from ft.config.schema import PeftConfig
from ft.errors import FtError


def _targets(cfg: PeftConfig):
    if cfg.target_modules is None or isinstance(cfg.target_modules, str):
        return cfg.target_modules
    return list(cfg.target_modules)


def _modules_to_save(cfg: PeftConfig):
    return list(cfg.modules_to_save) if cfg.modules_to_save else None


def _lora(cfg: PeftConfig, model_config, total_steps, task_type):
    from peft import LoraConfig

    return LoraConfig(
        task_type=task_type,
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=_targets(cfg),
        bias=cfg.bias,
        modules_to_save=_modules_to_save(cfg),
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        init_lora_weights=cfg.init_lora_weights,
    )


def _ia3(cfg: PeftConfig, model_config, total_steps, task_type):
    from peft import IA3Config

    feedforward = list(cfg.feedforward_modules) if cfg.feedforward_modules else None
    return IA3Config(
        task_type=task_type,
        target_modules=_targets(cfg),
        feedforward_modules=feedforward,
        modules_to_save=_modules_to_save(cfg),
    )


def adalora_schedule(cfg: PeftConfig, total_steps: int) -> tuple[int, int]:
    """(tinit, tfinal) in steps; floats < 1 are fractions of the run."""

    def steps(value):
        return int(value * total_steps) if 0 < value < 1 else int(value)

    tinit, tfinal = steps(cfg.tinit), steps(cfg.tfinal)
    if tinit >= total_steps - tfinal:
        raise FtError(
            f"AdaLoRA has no steps to prune ranks in: tinit={tinit} and tfinal={tfinal} cover the whole run of "
            f"{total_steps} steps: lower peft.tinit / peft.tfinal or train longer"
        )
    return tinit, tfinal


def _adalora(cfg: PeftConfig, model_config, total_steps, task_type):
    from peft import AdaLoraConfig

    tinit, tfinal = adalora_schedule(cfg, total_steps)
    return AdaLoraConfig(
        task_type=task_type,
        init_r=cfg.init_r,
        target_r=cfg.target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=cfg.deltaT,
        total_step=total_steps,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=_targets(cfg),
        bias=cfg.bias,
        modules_to_save=_modules_to_save(cfg),
    )


def _llama_adapter(cfg: PeftConfig, model_config, total_steps, task_type):
    from peft import AdaptionPromptConfig

    if cfg.modules_to_save:
        print(
            f"ft: warning: peft.modules_to_save={list(cfg.modules_to_save)} is ignored: Llama-Adapter trains only its "
            "prompts",
            flush=True,
        )
    layers = cfg.adapter_layers or model_config.num_hidden_layers
    return AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=cfg.adapter_len, adapter_layers=layers)


BUILDERS = {"lora": _lora, "ia3": _ia3, "adalora": _adalora, "llama_adapter": _llama_adapter}


def build_peft_config(cfg: PeftConfig, model_config=None, total_steps: int | None = None, task_type: str = "CAUSAL_LM"):
    """A peft.PeftConfig, or None for a full fine-tune. `model_config` (the transformers config) sizes
    Llama-Adapter; `total_steps` (optimizer steps of the run) schedules AdaLoRA; `task_type` is PEFT's:
    CAUSAL_LM, or SEQ_CLS for a reward model (PEFT then trains its new score head in full too)."""
    if cfg.method == "none":
        return None
    return BUILDERS[cfg.method](cfg, model_config, total_steps, task_type)


def prepare_base(cfg: PeftConfig, model) -> None:
    """Llama-Adapter only: PEFT's adaption-prompt wrapper keeps the forward the model had when it was
    wrapped, so TRL's fused LM head (patched in after wrapping) would never run. Add it before, as
    TRL's add_fused_lm_head asks ("add the head before wrapping the model with PEFT"), with the
    outputs SFTTrainer reads."""
    if cfg.method == "llama_adapter":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))


def match_compute_dtype(model, dtype) -> None:
    """TRL stores the trainable weights of a quantized model in bf16, the QLoRA paper's choice for
    bf16 compute. With fp32 compute (a CPU run) a bf16 output head cannot even run a plain forward,
    so there ft keeps them in the compute dtype."""
    import torch

    if dtype != torch.float32:
        return
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)


def is_quantized(cfg: PeftConfig) -> bool:
    return cfg.load_in_4bit or cfg.load_in_8bit


def is_pissa(cfg: PeftConfig) -> bool:
    return cfg.method == "lora" and str(cfg.init_lora_weights).lower().startswith("pissa")


def linear_module_names(model) -> list[str]:
    """Short names of the model's linear layers (what target_modules matches), output head excluded."""
    import torch

    output = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }
    return sorted(names)


def loraplus_optimizer(trainer, lr_ratio: float):
    """PEFT's LoRA+ optimizer (lora_B learns lr_ratio times faster), of the optimizer class that
    training.optim names, for the trainer's PEFT model."""
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    kwargs.pop("lr", None)
    return create_loraplus_optimizer(
        trainer.model,
        optimizer_cls,
        lr=trainer.args.learning_rate,
        loraplus_lr_ratio=lr_ratio,
        loraplus_weight_decay=trainer.args.weight_decay,
        **kwargs,
    )


PISSA_INIT = "pissa_init"  # the PiSSA adapter as initialized, kept in the run dir until the final save


def save_pissa_init(model, run_dir: Path) -> None:
    """Keep the PiSSA adapter as initialized: the final save converts against it."""
    model.save_pretrained(str(run_dir / PISSA_INIT))


def save_pissa_as_lora(model, run_dir: Path) -> None:
    """Overwrite the run's adapter with its plain-LoRA form (rank 2r) for the *original* base.

    A PiSSA model trains on a residual base (W minus the top singular directions); saved as is, the
    adapter would need that residual base to reproduce the trained outputs. PEFT converts it into
    the difference from the initial adapter, which applies to the unmodified base model.
    """
    from peft import get_peft_model_state_dict
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import load_file, save_file

    init = run_dir / PISSA_INIT
    model.save_pretrained(str(run_dir), path_initial_model_for_weight_conversion=str(init))
    shutil.rmtree(init)
    # PEFT's conversion keeps only the lora_A/lora_B tensors; put the modules_to_save weights back
    extra = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items() if "lora_" not in k}
    if extra:
        path = run_dir / SAFETENSORS_WEIGHTS_NAME
        save_file({**load_file(str(path)), **extra}, str(path), metadata={"format": "pt"})


def fused_experts(model) -> list[str]:
    """The MoE expert blocks of transformers 5 (one 3-D parameter per projection for all experts, not
    one nn.Linear per expert): PEFT adapts them as parameters, bitsandbytes leaves them unquantized."""
    return [
        name for name, module in model.named_modules() if any(p.dim() == 3 for p in module.parameters(recurse=False))
    ]
