"""`ft train`: the whole training path, top to bottom.

checks (engine, hardware, model reachable) -> run dir (new, resumed or replaced; rank 0 decides) ->
data -> tokenizer -> model (quantized for QLoRA) -> PEFT config -> SFTConfig (ft.tasks.sft_args) ->
SFTTrainer + callbacks -> train (untrained eval at step 0, preemption-safe) -> evaluate ->
save adapter + tokenizer -> metrics, loss plot, model card, optional push (rank 0).
"""

import os
from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft import data, models, rules
from ft.models import adapters
from ft.run import distributed, hardware, rundir, session
from ft.tasks import sft_args


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready SFTTrainer (data prepared, model wrapped); nothing trained yet."""
    from accelerate import PartialState
    from trl import SFTTrainer

    from ft.run import callbacks

    hw = hardware.detect()
    with PartialState().main_process_first():  # read, convert (and build the tiny model) once
        train_dataset, eval_dataset = data.load(cfg.data)
        tokenizer = models.load_tokenizer(cfg.model)
    args = sft_args.sft_config(cfg, hw, run_dir, has_eval=eval_dataset is not None, resuming=resuming)
    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hw))
    model_config = models.load_config(cfg.model)
    rules.check_model_config(cfg, model_config)
    quantization = models.quantization_config(cfg.peft, dtype, fsdp=cfg.distributed.strategy in distributed.FSDP)
    # on every rank at once: ZeRO-3 loading is collective
    model = models.load_model(cfg.model, dtype, **({"quantization_config": quantization} if quantization else {}))
    if quantization is not None:
        models.disable_4bit_cpu_repack(model)
    rules.check_loaded_model(cfg, model)
    adapters.prepare_base(cfg.peft, model)
    if quantization is not None:  # TRL 1.16 does not prepare k-bit models itself
        from peft import prepare_model_for_kbit_training

        checkpointing = hardware.activation_checkpointing(cfg.training.activation_checkpointing, hw)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / rundir.TENSORBOARD)
    os.environ.setdefault("WANDB_PROJECT", cfg.logging.project)
    os.environ["WANDB_DIR"] = str(run_dir)
    if "mlflow" in cfg.logging.report_to:  # a local store in the run dir unless the user has a server
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / rundir.MLFLOW).resolve().as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 wants a database for that
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", cfg.logging.project)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=adapters.build_peft_config(
            cfg.peft, model_config, session.total_optimizer_steps(cfg, len(train_dataset))
        ),
        callbacks=callbacks.build(cfg, run_dir),
    )
    if quantization is not None:
        adapters.match_compute_dtype(trainer.model, dtype)
    throughput = trainer.callback_handler.pop_callback(callbacks.ThroughputCallback)
    if throughput is not None:  # first, so that TensorBoard / W&B / the console see its numbers
        trainer.callback_handler.callbacks.insert(0, throughput)
    if cfg.peft.loraplus_lr_ratio:  # same as SFTTrainer(optimizers=(...)), which needs the PEFT model first
        trainer.optimizer = adapters.loraplus_optimizer(trainer, cfg.peft.loraplus_lr_ratio)
    if adapters.is_pissa(cfg.peft):
        adapters.save_pissa_init(trainer.model, run_dir)
    rules.check_trainer(trainer, cfg, run_dir, len(train_dataset))
    return trainer


def train(cfg, command: list[str] | None = None) -> session.Result:
    run = session.start(cfg, command)
    with run.setup():
        trainer = build_trainer(cfg, run.run_dir, resuming=run.resuming)
    return run.train(trainer)
