"""How every task builds its trainer: `trainer(TRLTrainer, make_args, cfg, run_dir, resuming)` takes
these steps in order (a task's module names its TRL trainer and config, e.g. tasks/dpo.py):

    inputs(cfg)                          data (in TRL's form) and tokenizer
    make_args(cfg, hw, ...)              the task's TRL config
    base_model(cfg, hw, num_labels)      model config checked, weights loaded (4/8-bit for QLoRA; with num_labels
                                         under a classification head), k-bit prepared, the adapter of
                                         model.adapter attached (training continues it)
    peft_config(cfg, base, n)            the new adapter for TRL to attach; None when model.adapter brought one
    logging_env(cfg, run_dir)            where TensorBoard / W&B / MLflow write
    TRLTrainer(...)                      on all of the above, with ft's callbacks; then
    finish(trainer, cfg, base, run_dir)  QLoRA dtypes, callback order, LoRA+ optimizer, PiSSA init, the trainer rules
"""

import os
from dataclasses import dataclass
from pathlib import Path

# Only light modules here: a task runs its quick checks before transformers (and bitsandbytes) load.
from ft import data, models, rules
from ft.config import registry
from ft.data import detect
from ft.errors import FtError
from ft.models import adapters
from ft.run import distributed, hardware, rundir
from ft.training import session


@dataclass
class Base:
    model: object
    config: object  # the transformers model config
    dtype: object  # torch dtype of the weights
    quantization: object  # BitsAndBytesConfig or None
    task_type: str = "CAUSAL_LM"  # PEFT's: SEQ_CLS under a classification head (a reward model)


def inputs(cfg):
    """(train, eval or None, tokenizer), read and converted once when several processes start."""
    from accelerate import PartialState

    with PartialState().main_process_first():  # read, convert (and build the tiny model) once
        train_dataset, eval_dataset = data.load(cfg.data, cfg.task)
        tokenizer = models.load_tokenizer(cfg.model)
    return train_dataset, eval_dataset, tokenizer


def base_model(cfg, hw: hardware.Hardware, num_labels: int | None = None) -> Base:
    """The model to train; `num_labels`: a sequence-classification model with that many outputs."""
    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hw))
    model_config = models.load_config(cfg.model)
    rules.check_model_config(cfg, model_config)
    quantization = models.quantization_config(cfg.peft, dtype, fsdp=distributed.sharded_by_fsdp(cfg))
    # on every rank at once: ZeRO-3 loading is collective
    if num_labels is not None:  # the new head is initialized at random: the same head for the same seed
        from transformers import set_seed

        set_seed(cfg.training.seed)
    loading = {"quantization_config": quantization} if quantization else {}
    model = models.load_model(cfg.model, dtype, num_labels, **loading)
    if quantization is not None:
        models.disable_4bit_cpu_repack(model)
    rules.check_loaded_model(cfg, model)
    if quantization is not None:
        models.prepare_experts(model, cfg.peft, cfg.model.name_or_path)
    adapters.prepare_base(cfg.peft, model)
    if quantization is not None:  # TRL 1.16 does not prepare k-bit models itself
        from peft import prepare_model_for_kbit_training

        checkpointing = hardware.activation_checkpointing(cfg.training.activation_checkpointing, hw)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    if cfg.model.adapter:
        model = attach_adapter(model, cfg.model.adapter, cfg.model.name_or_path)
    return Base(model, model_config, dtype, quantization, "CAUSAL_LM" if num_labels is None else "SEQ_CLS")


def attach_adapter(model, path: str, base_name: str):
    """The finished run's adapter, trainable: this run continues training it."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(Path(path).expanduser()), is_trainable=True)
    except (RuntimeError, ValueError, KeyError) as e:  # shape mismatches, modules the base lacks
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        reason = next((line for line in lines if "mismatch" in line), lines[0]).rstrip(".")
        raise FtError(
            f"model.adapter={path} does not fit model.name_or_path={base_name}: {reason}: "
            f"start from an adapter trained on this base model"
        ) from None


def peft_config(cfg, base: Base, num_examples: int):
    if cfg.model.adapter:
        return None
    steps = session.total_optimizer_steps(cfg, num_examples)
    return adapters.build_peft_config(cfg.peft, base.config, steps, base.task_type)


def logging_env(cfg, run_dir: Path) -> None:
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / rundir.TENSORBOARD)
    os.environ.setdefault("WANDB_PROJECT", cfg.logging.project)
    os.environ["WANDB_DIR"] = str(run_dir)
    if "mlflow" in cfg.logging.report_to:  # a local store in the run dir unless the user has a server
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / rundir.MLFLOW).resolve().as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 wants a database for that
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", cfg.logging.project)


def trainer(
    trainer_class,
    make_args,
    cfg,
    run_dir: Path,
    resuming: bool,
    num_labels=None,
    prepare=None,
    trained_share=False,
    **task_kwargs,
):
    """`trainer_class` (a TRL trainer) on the task's data and base model, with ft's callbacks, made ready.
    `make_args(cfg, hw, run_dir, has_eval, resuming)`: the task's TRL config; `num_labels`: a classification
    head on the base (a reward model); `prepare(cfg, tokenizer, train, eval, args)`: the task's last word on
    its data (SFT: the assistant masks); `trained_share`: check each example's share of trained tokens (assistant-only
    loss); `task_kwargs`: what only this trainer takes (GRPO's reward_funcs)."""
    from accelerate import PartialState

    from ft.data import cache
    from ft.run import callbacks

    hw = hardware.detect()
    cfg = detect.resolved(cfg)  # the same config when a session resolved it already
    train_dataset, eval_dataset, tokenizer = inputs(cfg)
    args = make_args(cfg, hw, run_dir, has_eval=eval_dataset is not None, resuming=resuming)
    num_examples, entry = len(train_dataset), None  # examples, not the cached (packed) rows
    if prepare is not None:  # first: it may change the chat template, which the cache key includes
        train_dataset, eval_dataset = prepare(cfg, tokenizer, train_dataset, eval_dataset, args)
    if registry.get(cfg.task).cache and cfg.data.cache.enabled:
        entry, train_dataset, eval_dataset = cache.lookup(
            cfg, args, tokenizer, train_dataset, eval_dataset, PartialState()
        )
    base = base_model(cfg, hw, num_labels)
    logging_env(cfg, run_dir)
    made = trainer_class(
        model=base.model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, base, num_examples),
        callbacks=callbacks.build(cfg, run_dir),
        **task_kwargs,
    )
    made = finish(made, cfg, base, run_dir, num_examples, trained_share)
    if entry is not None:  # only data that passed the trainer rules is kept
        cache.store(entry, made.train_dataset, made.eval_dataset, PartialState())
    return made


def finish(trainer, cfg, base: Base, run_dir: Path, num_examples: int, trained_share: bool = False):
    """The trainer made ready to train; the last rules checked on the tokenized data."""
    from ft.run import callbacks

    if base.quantization is not None:
        from ft.models import experts

        adapters.match_compute_dtype(trainer.model, base.dtype)
        experts.skip_in_ddp_broadcast(trainer.model)
    throughput = trainer.callback_handler.pop_callback(callbacks.ThroughputCallback)
    if throughput is not None:  # first, so that TensorBoard / W&B / the console see its numbers
        trainer.callback_handler.callbacks.insert(0, throughput)
    if cfg.peft.loraplus_lr_ratio:  # same as Trainer(optimizers=(...)), which needs the PEFT model first
        trainer.optimizer = adapters.loraplus_optimizer(trainer, cfg.peft.loraplus_lr_ratio)
    if adapters.is_pissa(cfg.peft) and not cfg.model.adapter:
        adapters.save_pissa_init(trainer.model, run_dir)
    rules.check_trainer(trainer, cfg, run_dir, num_examples, trained_share)
    return trainer
