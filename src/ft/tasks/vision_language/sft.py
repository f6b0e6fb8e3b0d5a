"""`ft train` with task=vlm: LoRA / QLoRA on a vision-language model's language model, top to bottom.

checks -> run dir -> image conversations (every image opened, placeholders counted: data.py) -> processor
(pixel budget; the chat template's training variant with {% generation %} markers) -> model (4-bit
language model for QLoRA, vision tower and projector left in the compute dtype) -> LoRA on the language
model only (the vision tower with vision.lora_vision_tower, the projector in full with
vision.train_projector) -> SFTConfig -> SFTTrainer with TRL's vision collator -> the loss mask of every
example checked (masks.py) -> train -> evaluate -> save adapter + processor -> held-out exact match on
synthetic data, loss plot, card (the same session as every task: ft.training.session).
"""

from pathlib import Path

from ft.errors import FtError


def sft_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import SFTConfig

    from ft.training import trainer_args

    return SFTConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        max_length=cfg.training.max_length,
        assistant_only_loss=True,
        # the collator reads the messages and images of each row; the Trainer must not drop those columns
        remove_unused_columns=False,
    )


def training_template(processor, model_name: str) -> str:
    """The processor's chat template with {% generation %} markers, which TRL's collator masks by: its own
    when it has them, else TRL's training variant of it (saved with the run, so `ft generate` renders the
    same text)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = processor.chat_template
    if template and has_generation_markers(template):
        return "its own"
    try:
        variant = get_training_chat_template(processor)
    except ValueError:
        variant = None
    if not variant:
        raise FtError(
            f"the chat template of {model_name} has no {{% generation %}} markers and TRL has no training variant "
            f"of it, so ft cannot tell which tokens are the assistant's: set model.chat_template to the template "
            f"with {{% generation %}} around each assistant turn (content and end-of-turn token)"
        )
    processor.chat_template = variant
    return "TRL's training variant"


def base_model(cfg, hw, vision):
    """The model to train and its dtype: under QLoRA a 4-bit language model, the vision tower and projector
    unquantized unless `vision` (the task's VisionConfig section) has quantize_vision_tower."""
    from ft import models as text_models
    from ft.run import hardware
    from ft.tasks.vision_language import models

    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hw))
    quantization = models.quantization_config(cfg.model, cfg.peft, vision, dtype)
    model = models.load_model(cfg.model, dtype, quantization)
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        text_models.disable_4bit_cpu_repack(model)
        checkpointing = hardware.activation_checkpointing(cfg.training.activation_checkpointing, hw)
        # PEFT upcasts what stays unquantized (norms, embeddings, the vision side) to fp32, as for text QLoRA
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    if cfg.model.adapter:  # a finished run's adapter, trained on (e.g. image DPO after image SFT)
        from ft.training import build

        model = build.attach_adapter(model, cfg.model.adapter, cfg.model.name_or_path)
    return model, dtype


def peft_config(cfg, model, num_examples: int, vision):
    from ft.models import adapters
    from ft.tasks.vision_language import models
    from ft.training import session

    if cfg.model.adapter:  # model.adapter brought one
        return None
    config = adapters.build_peft_config(cfg.peft, model.config, session.total_optimizer_steps(cfg, num_examples))
    config.target_modules = models.lora_targets(model, vision, cfg.peft.target_modules)
    if not config.target_modules:
        raise FtError(
            f"peft.target_modules={cfg.peft.target_modules} names no linear layer of the language model of "
            f"{cfg.model.name_or_path}: use all-linear, or names such as q_proj, v_proj"
        )
    config.modules_to_save = models.modules_to_save(model, vision, cfg.peft.modules_to_save)
    return config


def trainer(trainer_class, args, cfg, hw, vision, processor, train, evaluation, run_dir: Path):
    """`trainer_class` (TRL's SFTTrainer, or DPOTrainer for task=vlm_dpo) on image data: the base model as
    `vision` (the task's VisionConfig section) asks, the language model's LoRA, ft's callbacks."""
    import torch

    from ft.models import adapters
    from ft.run import callbacks, hardware
    from ft.training import build

    model, dtype = base_model(cfg, hw, vision)
    build.logging_env(cfg, run_dir)
    made = trainer_class(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        peft_config=peft_config(cfg, model, len(train), vision),
        callbacks=callbacks.build(cfg, run_dir),
    )
    if adapters.is_quantized(cfg.peft):
        # with no autocast (fp32 precision) the trainable weights are fp32 whatever model.dtype: the projector is fed
        # the fp32 output of the vision tower, which prepare_model_for_kbit_training upcast
        no_autocast = hardware.precision(cfg.training.precision, hw) == "fp32"
        adapters.match_compute_dtype(made.model, torch.float32 if no_autocast else dtype)
    return made


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready SFTTrainer on image conversations; nothing trained yet."""
    from accelerate import PartialState
    from trl import SFTTrainer

    from ft.run import hardware
    from ft.tasks.vision_language import data, masks, models

    hw = hardware.detect()
    with PartialState().main_process_first():  # images opened (and the tiny model built) once
        (train, evaluation), shape = data.load(cfg.data)
        processor = models.load_processor(cfg.model, cfg.vision)
    method = training_template(processor, cfg.model.name_or_path)
    print(f"ft: {len(train)} image conversations ({shape}); assistant masks: {method}", flush=True)
    args = sft_config(cfg, hw, run_dir, has_eval=evaluation is not None, resuming=resuming)
    made = trainer(SFTTrainer, args, cfg, hw, cfg.vision, processor, train, evaluation, run_dir)
    masks.check(train, made.data_collator, processor, made.model)
    return made
