"""`ft train`: the whole training path, top to bottom.

config -> hardware -> run dir -> data -> tokenizer + model -> PEFT config -> SFTConfig ->
SFTTrainer -> evaluate (untrained) -> train -> evaluate -> save adapter, tokenizer, metrics, plot.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from ft import adapters, data, hardware, models, outputs
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
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=adapters.build_peft_config(cfg.peft),
    )


def train(cfg) -> TrainResult:
    run_dir = outputs.run_dir_for(cfg)
    with outputs.new_run_dir(run_dir, to_yaml(cfg)):  # removed again if the setup fails
        print(f"ft: run directory {run_dir}", flush=True)
        trainer = build_trainer(cfg, run_dir)
    _print_trainable(trainer.model)
    metrics = {}
    if cfg.training.eval_before_training and trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate(metric_key_prefix="base"))
        trainer.save_metrics("base", metrics)

    train_output = trainer.train()
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
    if trainer.is_world_process_zero():
        _finish(cfg, run_dir, trainer, metrics)
    return TrainResult(run_dir=run_dir, trainer=trainer, metrics=metrics)


def _finish(cfg, run_dir: Path, trainer, metrics: dict) -> None:
    """The model card (replacing PEFT's stub README.md), then the push if the recipe asks for one."""
    from ft import card, hub

    card.write(cfg, run_dir, trainer, metrics)
    if cfg.hub.push:
        uploaded = hub.push(run_dir, cfg.hub.repo_id, private=cfg.hub.private, revision=cfg.hub.revision)
        print(f"ft: pushed {len(uploaded)} files to {cfg.hub.repo_id}", flush=True)


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
