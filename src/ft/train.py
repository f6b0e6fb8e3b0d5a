"""`ft train`: the whole training path, top to bottom.

config -> hardware -> run dir -> data -> tokenizer + model -> PEFT config -> SFTConfig ->
SFTTrainer -> evaluate (untrained) -> train -> evaluate -> save adapter, tokenizer, metrics, plot.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from ft import adapters, checks, data, hardware, models, outputs, resume
from ft.config import to_yaml


@dataclass
class TrainResult:
    run_dir: Path
    trainer: object  # trl.SFTTrainer; its .model is the trained (PEFT) model
    metrics: dict


def sft_config(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool):
    """Map ft's training/optim/logging groups onto TRL's SFTConfig, deciding precision and
    checkpointing from the hardware instead of trusting SFTConfig's GPU-minded defaults."""
    from trl import SFTConfig

    t, o = cfg.training, cfg.optim
    precision = hardware.precision(t.precision, hw)
    return SFTConfig(
        output_dir=str(run_dir),
        run_name=run_dir.name,
        seed=t.seed,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        optim=o.name,
        optim_args=o.optim_args,
        weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2,
        adam_epsilon=o.adam_epsilon,
        max_grad_norm=o.max_grad_norm,
        max_length=t.max_length,
        packing=t.packing,
        assistant_only_loss=t.assistant_only_loss and data.is_conversational(cfg.data.format),
        completion_only_loss=t.completion_only_loss,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=hw.device == "cpu",
        activation_checkpointing=hardware.activation_checkpointing(t.activation_checkpointing, hw),
        eval_strategy=t.eval_strategy if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to=list(cfg.logging.report_to) or "none",
        dataloader_num_workers=t.dataloader_num_workers,
    )


def build_trainer(cfg, run_dir: Path):
    """Everything up to a ready SFTTrainer (data prepared, model wrapped); nothing trained yet."""
    from trl import SFTTrainer

    hw = hardware.detect()
    train_dataset, eval_dataset = data.load(cfg.data)
    args = sft_config(cfg, hw, run_dir, has_eval=eval_dataset is not None)
    tokenizer = models.load_tokenizer(cfg.model)
    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hw))
    model = models.load_model(cfg.model, dtype)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=adapters.build_peft_config(cfg.peft),
    )
    checks.lengths(trainer.train_dataset, len(train_dataset), cfg.training.max_length, cfg.training.packing)
    checks.disk_space(trainer, cfg, run_dir, len(train_dataset))
    return trainer


def train(cfg, command: list[str] | None = None) -> TrainResult:
    """`command`: the command line that started the run, echoed in how-to-resume messages."""
    run_dir = outputs.run_dir_for(cfg)
    checks.preflight(cfg)
    plan = resume.plan(run_dir, to_yaml(cfg), cfg.training.resume, cfg.training.overwrite)
    with outputs.new_run_dir(run_dir, to_yaml(cfg), plan):  # what it made is removed if the setup fails
        print(f"ft: run directory {run_dir}", flush=True)
        trainer = build_trainer(cfg, run_dir)
    _print_trainable(trainer.model)
    how_to_resume = resume.resume_command(command, run_dir, cfg)
    if cfg.training.run_name is None:
        print(f"ft: to resume this run after an interruption: {how_to_resume}", flush=True)
    metrics = outputs.read_metrics(run_dir) if plan.checkpoint else {}  # the untrained model's eval, if any
    from ft.preemption import PreemptionCallback  # imports transformers: after the quick checks

    preemption = PreemptionCallback()
    trainer.add_callback(preemption)
    with preemption.handling_signals():
        if cfg.training.eval_before_training and trainer.eval_dataset is not None and not plan.checkpoint:
            metrics.update(trainer.evaluate(metric_key_prefix="base"))
            trainer.save_metrics("base", metrics)
        train_output = trainer.train(resume_from_checkpoint=plan.checkpoint)
    if preemption.received:
        step = trainer.state.global_step
        print(f"ft: stopped by {preemption.received} at step {step}; checkpoint saved to {run_dir / f'checkpoint-{step}'}\n"
              f"ft: to resume: {how_to_resume}", flush=True)
        return TrainResult(run_dir=run_dir, trainer=trainer, metrics=metrics)
    metrics.update(train_output.metrics)
    trainer.save_metrics("train", train_output.metrics)
    if trainer.eval_dataset is not None:
        final_eval = trainer.evaluate()
        metrics.update(final_eval)
        trainer.save_metrics("eval", final_eval)

    trainer.save_model(str(run_dir))  # adapter (or full weights) + tokenizer, safetensors
    trainer.save_state()
    outputs.plot_loss(trainer.state.log_history, run_dir / "loss.png")
    _print_summary(run_dir, metrics)
    return TrainResult(run_dir=run_dir, trainer=trainer, metrics=metrics)


def _print_trainable(model) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
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
