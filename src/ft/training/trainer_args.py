"""ft's training/optim/logging/callbacks groups -> the TrainingArguments every TRL config shares
(SFTConfig, DPOConfig, RewardConfig). Precision and activation checkpointing are decided from the
hardware, never left to TRL's GPU-minded defaults (bf16 and checkpointing on)."""

from pathlib import Path

from ft.run import hardware


def common(cfg, hw: hardware.Hardware, run_dir: Path, has_eval: bool, resuming: bool = False) -> dict:
    """The TrainingArguments keywords of a run, the same for every task; a task's module adds its own
    (e.g. ft.tasks.sft.sft_config) and builds its TRL config from both."""
    t, o = cfg.training, cfg.optim
    precision = hardware.precision(t.precision, hw)
    checkpointing = hardware.activation_checkpointing(t.activation_checkpointing, hw)
    early_stopping = cfg.callbacks.early_stopping_patience is not None and has_eval
    return dict(
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
        optim_args=_optim_args(o),
        weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2,
        adam_epsilon=o.adam_epsilon,
        max_grad_norm=o.max_grad_norm,
        optim_target_modules=list(o.target_modules)
        if isinstance(o.target_modules, (list, tuple))
        else o.target_modules,
        neftune_noise_alpha=t.neftune_noise_alpha,
        use_liger_kernel=t.use_liger_kernel,
        torch_compile=t.torch_compile,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=hw.device == "cpu",
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": t.activation_checkpointing_use_reentrant}
        if checkpointing
        else None,
        eval_strategy=t.eval_strategy if has_eval else "no",
        # The untrained model's eval, run by the trainer itself: a separate evaluate() before
        # train() leaves the model unwrapped, so DDP would silently train unsynchronised replicas.
        eval_on_start=t.eval_before_training and has_eval and not resuming,
        eval_steps=t.eval_steps,
        # early stopping loads the best checkpoint at the end: one is saved at every evaluation
        save_strategy=t.eval_strategy if early_stopping else t.save_strategy,
        save_steps=t.eval_steps if early_stopping else t.save_steps,
        save_total_limit=t.save_total_limit,
        # EarlyStoppingCallback reads the best eval_loss the trainer tracks for load_best_model_at_end
        load_best_model_at_end=early_stopping,
        metric_for_best_model="eval_loss" if early_stopping else None,
        greater_is_better=False if early_stopping else None,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to=list(cfg.logging.report_to) or "none",
        include_num_input_tokens_seen="non_padding" if cfg.callbacks.throughput else "no",
        dataloader_num_workers=t.dataloader_num_workers,
        ddp_timeout=cfg.distributed.timeout_s,
    )


def _optim_args(o) -> str | None:
    """optim.optim_args, plus the GaLore projection settings for galore_* optimizers."""
    parts = [o.optim_args] if o.optim_args else []
    if o.name.startswith("galore"):
        parts.append(f"rank={o.galore.rank},update_proj_gap={o.galore.update_proj_gap},scale={o.galore.scale}")
    return ",".join(parts) or None
