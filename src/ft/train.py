"""`ft train`: the whole training path, top to bottom.

checks (engine, hardware, model reachable) -> run dir (new, resumed or replaced; rank 0 decides) ->
data -> tokenizer -> model (quantized for QLoRA) -> PEFT config -> SFTConfig (ft.sft_args) ->
SFTTrainer + callbacks -> train (untrained eval at step 0, preemption-safe) -> evaluate ->
save adapter + tokenizer -> metrics, loss plot, model card, optional push (rank 0).
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft import adapters, checks, data, distributed, hardware, models, outputs, resume, sft_args
from ft.config import to_yaml


@dataclass
class TrainResult:
    run_dir: Path
    trainer: object  # trl.SFTTrainer; its .model is the trained (PEFT) model
    metrics: dict


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready SFTTrainer (data prepared, model wrapped); nothing trained yet."""
    from accelerate import PartialState
    from trl import SFTTrainer

    from ft import callbacks

    hw = hardware.detect()
    with PartialState().main_process_first():  # read, convert (and build the tiny model) once
        train_dataset, eval_dataset = data.load(cfg.data)
        tokenizer = models.load_tokenizer(cfg.model)
    args = sft_args.sft_config(cfg, hw, run_dir, has_eval=eval_dataset is not None, resuming=resuming)
    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hw))
    model_config = models.load_config(cfg.model)
    adapters.check_architecture(cfg.peft, model_config, cfg.model.name_or_path)
    quantization = models.quantization_config(cfg.peft, dtype, fsdp=cfg.distributed.strategy in distributed.FSDP)
    # on every rank at once: ZeRO-3 loading is collective
    model = models.load_model(cfg.model, dtype, **({"quantization_config": quantization} if quantization else {}))
    if quantization is not None:
        models.disable_4bit_cpu_repack(model)
    adapters.check_target_modules(cfg.peft, model)
    adapters.prepare_base(cfg.peft, model)
    if quantization is not None:  # TRL 1.16 does not prepare k-bit models itself
        from peft import prepare_model_for_kbit_training

        checkpointing = hardware.activation_checkpointing(cfg.training.activation_checkpointing, hw)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    os.environ.setdefault("WANDB_PROJECT", cfg.logging.project)
    os.environ["WANDB_DIR"] = str(run_dir)
    if "mlflow" in cfg.logging.report_to:  # a local store in the run dir unless the user has a server
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / "mlruns").resolve().as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 wants a database for that
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", cfg.logging.project)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=adapters.build_peft_config(cfg.peft, model_config, total_optimizer_steps(cfg, len(train_dataset))),
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
    checks.lengths(trainer.train_dataset, len(train_dataset), cfg.training.max_length, cfg.training.packing)
    checks.disk_space(trainer, cfg, run_dir, len(train_dataset))
    return trainer


def total_optimizer_steps(cfg, num_examples: int) -> int:
    """The run's optimizer steps as the Trainer will count them (before packing changes the rows)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batches = math.ceil(num_examples / (t.per_device_train_batch_size * world))
    per_epoch = max(math.ceil(batches / t.gradient_accumulation_steps), 1)
    return math.ceil(t.num_train_epochs * per_epoch)


def train(cfg, command: list[str] | None = None) -> TrainResult:
    """`command`: the command line that started the run, echoed in how-to-resume messages."""
    distributed.check_engine(cfg)
    hw = hardware.detect()
    hardware.check_requirements(cfg, hw)
    checks.preflight(cfg)
    ranks = distributed.state(cfg.distributed.timeout_s, cpu=hw.device == "cpu")  # one process or many
    main = ranks.is_main_process
    run_dir = Path(distributed.shared_value(str(outputs.run_dir_for(cfg)), ranks))  # rank 0's name
    # Rank 0 decides (start, continue a checkpoint, replace) and makes the run dir; the others follow.
    plan = resume.plan(run_dir, to_yaml(cfg), cfg.training.resume, cfg.training.overwrite) if main else None
    checkpoint = distributed.shared_value(plan.checkpoint if main else None, ranks)
    with outputs.new_run_dir(run_dir, to_yaml(cfg), plan, create=main):  # what it made is removed if setup fails
        if main:
            print(f"ft: run directory {run_dir}", flush=True)
        distributed.wait_for_everyone(ranks, "run directory", cfg.distributed.timeout_s)
        trainer = build_trainer(cfg, run_dir, resuming=checkpoint is not None)
    how_to_resume = resume.resume_command(command, run_dir, cfg)
    if main:
        _print_trainable(trainer.model)
        if cfg.training.run_name is None:
            print(f"ft: to resume this run after an interruption: {how_to_resume}", flush=True)
    from ft.preemption import PreemptionCallback  # imports transformers: after the quick checks

    preemption = PreemptionCallback()
    trainer.add_callback(preemption)
    with preemption.handling_signals():
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    if preemption.received:
        step = trainer.state.global_step
        if main:
            print(f"ft: stopped by {preemption.received} at step {step}; checkpoint saved to {run_dir / f'checkpoint-{step}'}\n"
                  f"ft: to resume: {how_to_resume}", flush=True)
        return TrainResult(run_dir=run_dir, trainer=trainer, metrics={})
    metrics = dict(train_output.metrics)
    base_loss = _untrained_eval_loss(trainer.state.log_history)
    if base_loss is not None:
        metrics["base_loss"] = base_loss
        trainer.save_metrics("base", {"base_loss": base_loss})
    trainer.save_metrics("train", train_output.metrics)
    if trainer.eval_dataset is not None:
        final_eval = trainer.evaluate()
        metrics.update(final_eval)
        trainer.save_metrics("eval", final_eval)

    trainer.save_model(str(run_dir))  # every rank: ZeRO-3 gathers the weights; rank 0 writes
    if adapters.is_pissa(cfg.peft) and main:
        adapters.save_pissa_as_lora(trainer.model, run_dir)
    trainer.save_state()
    _report_ranks(trainer, ranks)
    if main:
        outputs.plot_loss(trainer.state.log_history, run_dir / "loss.png")
        _print_summary(run_dir, metrics)
        _finish(cfg, run_dir, trainer, metrics)
    return TrainResult(run_dir=run_dir, trainer=trainer, metrics=metrics)


def _untrained_eval_loss(log_history: list[dict]) -> float | None:
    """The step-0 evaluation (eval_on_start); a resumed run finds it in the restored log."""
    return next((row["eval_loss"] for row in log_history if "eval_loss" in row and row.get("step") == 0), None)


def _report_ranks(trainer, ranks) -> None:
    """With several processes: say how many trained, and check they hold the same weights."""
    if ranks.num_processes == 1:
        return
    from accelerate.utils import gather_object

    sharded = trainer.is_fsdp_enabled or (
        trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    )
    checksums = gather_object([None if sharded else distributed.parameter_checksum(trainer.model)])
    if not ranks.is_main_process:
        return
    print(f"ft: trained on {ranks.num_processes} processes (world size {ranks.num_processes})", flush=True)
    if not sharded:
        if max(checksums) - min(checksums) <= 1e-6 * max(1.0, abs(checksums[0])):
            print(f"ft: trainable parameters identical on every rank (checksum {checksums[0]:.6f})", flush=True)
        else:
            print(f"ft: warning: trainable parameters differ between ranks: {checksums}", flush=True)


def _finish(cfg, run_dir: Path, trainer, metrics: dict) -> None:
    """The model card (replacing PEFT's stub README.md), then the push if the recipe asks for one."""
    from ft import card, hub

    card.write(cfg, run_dir, trainer, metrics)
    if cfg.hub.push:
        uploaded = hub.push(run_dir, cfg.hub.repo_id, private=cfg.hub.private, revision=cfg.hub.revision)
        print(f"ft: pushed {len(uploaded)} files to {cfg.hub.repo_id}", flush=True)


def _print_trainable(model) -> None:
    def numel(p):  # ZeRO-3 partitions parameters; ds_numel is the full size
        return getattr(p, "ds_numel", p.numel())

    trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(numel(p) for p in model.parameters())
    print(f"ft: trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)", flush=True)


def _print_summary(run_dir: Path, metrics: dict) -> None:
    lines = [f"ft: done in {metrics.get('train_runtime', 0):.1f}s, train loss {metrics.get('train_loss', float('nan')):.4f}"]
    if "base_loss" in metrics and "eval_loss" in metrics:
        ratio = metrics["eval_loss"] / metrics["base_loss"]
        lines.append(f"ft: eval loss {metrics['base_loss']:.4f} (untrained) -> {metrics['eval_loss']:.4f} (trained), ratio {ratio:.2f}")
    elif "eval_loss" in metrics:
        lines.append(f"ft: eval loss {metrics['eval_loss']:.4f}")
    lines.append(f"ft: saved to {run_dir}")
    print("\n".join(lines), flush=True)
