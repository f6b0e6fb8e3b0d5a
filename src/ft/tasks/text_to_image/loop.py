"""`ft train` with task=text_to_image: LoRA on a Stable Diffusion (1.5, 2.1) or SDXL UNet, or on a Flux.1 / SD3
transformer (flow matching: ft.tasks.text_to_image.flow), top to bottom.

There is no Trainer for diffusion, so this is a plain Accelerate loop, the kind diffusers' example
scripts are: checks -> run dir (ft.training.session: new, resumed or replaced) -> captioned images
(ft.tasks.text_to_image.images; DreamBooth: instance images + class images the base renders) -> the pipeline's parts
(ft.tasks.text_to_image.pipeline) -> LoRA on the UNet attention, trainable params kept fp32 -> Accelerator(
mixed_precision, gradient_accumulation_steps) -> prepare -> per batch: VAE latents, text embeddings,
noise at random timesteps, predict the noise or the velocity, MSE (Min-SNR weighted if asked) ->
accumulate, backward, clip, step -> gather the loss for logging; validation renders into samples/ and
TensorBoard; save_state checkpoints (LoRA, optimizer, scheduler, RNG) -> pytorch_lora_weights.safetensors
in the run dir, loss plot, model card (ft.tasks.text_to_image.finish).
"""

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

# Only light modules here: train() runs its quick checks before torch and diffusers load.
from ft.errors import FtError
from ft.models import adapters
from ft.run import hardware, resume, rundir
from ft.tasks.text_to_image import state as text_to_image_state
from ft.training import session

MIXED_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}  # ft's precision -> Accelerate's
EMA_WEIGHTS = "pytorch_lora_weights_ema.safetensors"  # diffusion.ema_decay's weights, in diffusers' format


def train(cfg, command: list[str] | None = None) -> session.Result:
    run = session.start(cfg, command)
    with run.setup():
        job = prepare(cfg, run.run_dir, run.checkpoint)
    return loop(job, run)


@dataclass
class Job:
    """Everything the loop uses, made ready in the run dir by `prepare`."""

    cfg: object
    run_dir: Path
    acc: object  # the Accelerator
    trackers: list[str]
    dtype: object  # torch dtype of the frozen parts
    parts: object  # pipeline.Parts
    dataset: object  # batches.Examples
    steps: int  # optimizer steps of the run
    steps_per_epoch: int
    params: list  # the trained (LoRA) parameters
    models: list  # the trained models, prepared by Accelerate
    optimizer: object
    lr_scheduler: object
    start_step: int  # 0, or the checkpoint's step
    log_history: list[dict]
    ema: object = None  # diffusers' EMAModel of the LoRA parameters (diffusion.ema_decay), or None


def prepare(cfg, run_dir: Path, checkpoint: str | None = None) -> Job:
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel, cast_training_params

    from ft.tasks.text_to_image import batches as image_batches
    from ft.tasks.text_to_image import buckets, flow, images
    from ft.tasks.text_to_image import pipeline as diffusion
    from ft.tasks.text_to_image import render as diffusion_render

    d, t = cfg.diffusion, cfg.training
    hw = hardware.detect()
    quantized = adapters.is_quantized(cfg.peft)
    if quantized and hw.device == "cpu":  # diffusers' bitsandbytes quantizer asks for a GPU
        raise FtError(
            "peft.load_in_4bit: task=text_to_image quantizes the transformer with diffusers' bitsandbytes "
            "quantizer, which needs a GPU; this machine has none: use peft=lora"
        )
    trackers = [name for name in cfg.logging.report_to if name == "tensorboard"]
    acc = Accelerator(
        mixed_precision=MIXED_PRECISION[hardware.precision(t.precision, hw)],
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        log_with=trackers or None,
        project_dir=str(run_dir / rundir.TENSORBOARD),
        cpu=hw.device == "cpu",
        # SDXL's first text encoder gives its penultimate layer: the last layer's LoRA gets no gradient
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=d.train_text_encoder)],
    )
    set_seed(t.seed)
    dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[acc.mixed_precision]
    with PartialState().main_process_first():  # build a tiny pipeline, read and check the images, once
        path = diffusion.resolve_path(cfg.model.name_or_path)
        examples = images.load(cfg.data, d)
    if flow.loaded_family(path, cfg.model.revision):
        parts = flow.load_parts(path, cfg.model.revision, d, dtype if quantized else None)
    else:
        parts = diffusion.load_parts(path, cfg.model.revision, d.prediction_type)
    class_examples = []
    if d.with_prior_preservation:  # DreamBooth: class images rendered by the base on rank 0, kept for reuse
        folder = Path(d.class_data_dir).expanduser() if d.class_data_dir else run_dir / "class_images"
        with PartialState().main_process_first():
            diffusion_render.class_images(cfg.model.name_or_path, cfg.model.revision, folder, d, acc.device, dtype)
        class_examples = images.instance_folder(folder, d.class_prompt, "diffusion.class_data_dir")

    # Frozen parts in the run's precision (the VAE in fp32: it overflows in fp16); LoRA parameters in fp32
    parts.vae.to(acc.device)
    for model in (parts.denoiser, *parts.text_encoders):
        if getattr(model, "is_quantized", False):  # QLoRA: loaded onto the GPU in 4-bit already
            from peft import prepare_model_for_kbit_training

            prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            continue
        model.to(acc.device, **({"dtype": dtype} if dtype != torch.float32 else {}))
    diffusion.add_lora(parts, cfg.peft, d.train_text_encoder)
    models = diffusion.trained_models(parts, d.train_text_encoder)
    cast_training_params(models, dtype=torch.float32)
    if hardware.activation_checkpointing(t.activation_checkpointing, hw):
        parts.denoiser.enable_gradient_checkpointing()
        for encoder in models[1:]:
            encoder.gradient_checkpointing_enable()

    dataset = image_batches.Examples(examples, class_examples, d, parts.size_factor, t.seed)
    if acc.is_main_process:
        for line in buckets.describe(dataset.bucket_of):
            print(f"ft: {line}", flush=True)
    if d.cache_latents or d.cache_text_embeddings:
        dataset.cache(parts, acc.device, d.cache_latents, d.cache_text_embeddings)
    # a bucket's last batch may be short: an epoch has as many batches as its buckets' batches together
    first = buckets.epoch_batches(dataset.bucket_of, t.per_device_train_batch_size, acc.num_processes, t.seed, 0)
    batches = len(first) // acc.num_processes
    steps_per_epoch = max(math.ceil(batches / t.gradient_accumulation_steps), 1)
    steps = t.max_steps if t.max_steps > 0 else math.ceil(t.num_train_epochs * steps_per_epoch)
    params = [p for model in models for p in model.parameters() if p.requires_grad]
    optimizer = text_to_image_state.make_optimizer(cfg, params)
    ema = EMAModel(params, decay=d.ema_decay) if d.ema_decay else None
    warmup = int(t.warmup_steps if t.warmup_steps >= 1 else math.ceil(t.warmup_steps * steps))
    lr_scheduler = get_scheduler(  # stepped once per process per optimizer step by Accelerate
        t.lr_scheduler_type, optimizer, warmup * acc.num_processes, steps * acc.num_processes
    )
    *models, optimizer, lr_scheduler = acc.prepare(*models, optimizer, lr_scheduler)
    text_to_image_state.checkpoint_only_the_lora(acc, parts)
    if ema is not None:
        acc.register_for_checkpointing(ema)
    start_step = 0
    if checkpoint:
        acc.load_state(checkpoint)
        start_step = json.loads((Path(checkpoint) / rundir.TRAINER_STATE).read_text())["global_step"]
    return Job(
        cfg=cfg,
        run_dir=run_dir,
        acc=acc,
        trackers=trackers,
        dtype=dtype,
        parts=parts,
        dataset=dataset,
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        params=params,
        models=models,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        start_step=start_step,
        log_history=text_to_image_state.earlier_log(checkpoint),
        ema=ema,
    )


def loop(job: Job, run) -> session.Result:
    """Train from job.start_step to job.steps; on SIGTERM / SIGINT, stop at a checkpoint after this step."""
    from ft.run import callbacks
    from ft.run.preemption import PreemptionCallback

    acc, cfg, t, d = job.acc, job.cfg, job.cfg.training, job.cfg.diffusion
    if job.trackers:
        acc.init_trackers("text_to_image")
    if run.main:
        trainable = sum(p.numel() for p in job.params)
        total = sum(p.numel() for m in (job.parts.denoiser, *job.parts.text_encoders) for p in m.parameters())
        share = f"{100 * trainable / total:.2f}%"
        print(
            f"ft: trainable parameters {trainable:,} of {total:,} ({share}) on {acc.num_processes} process(es)",
            flush=True,
        )
    log_every, save_every = every(t.logging_steps, job.steps), every(t.save_steps, job.steps)
    preemption, step, started = PreemptionCallback(), job.start_step, time.time()
    for model in job.models:
        model.train()
    with preemption.handling_signals():
        while step < job.steps:
            epoch = step // job.steps_per_epoch
            step_loss = 0.0
            for batch in _epoch_batches(job, epoch, skip=(step % job.steps_per_epoch) * t.gradient_accumulation_steps):
                with acc.accumulate(*job.models):
                    loss = batch_loss(job, batch)
                    step_loss += acc.gather(loss.detach()[None]).mean().item() / t.gradient_accumulation_steps
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                        acc.clip_grad_norm_(job.params, cfg.optim.max_grad_norm)
                    job.optimizer.step()
                    job.lr_scheduler.step()
                    job.optimizer.zero_grad()
                if not acc.sync_gradients:
                    continue
                if job.ema is not None:
                    job.ema.step(job.params)
                step += 1
                row = {"step": step, "epoch": round(step / job.steps_per_epoch, 4), "loss": step_loss}
                row["learning_rate"] = job.lr_scheduler.get_last_lr()[0]
                job.log_history.append(row)
                if run.main:
                    rundir.append_log(run.run_dir, row)
                acc.log({"train/loss": step_loss, "train/learning_rate": row["learning_rate"]}, step=step)
                if run.main and step % log_every == 0:
                    print(f"ft: step {step}/{job.steps} loss {step_loss:.4f}", flush=True)
                step_loss = 0.0
                stopping = preemption.any_rank_received(acc.device)
                if stopping or (t.save_strategy == "steps" and step % save_every == 0 and step < job.steps):
                    text_to_image_state.save_checkpoint(job, step)
                if d.validation_prompts and step % d.validation_steps == 0:
                    validate(job, step, d.validation_prompts)
                if stopping:
                    if run.main:
                        how = resume.resume_command(run.command, run.run_dir, cfg)
                        print(f"ft: stopped by {preemption.received or 'a signal'} at step {step}; to resume: {how}")
                    acc.end_training()
                    return session.Result(run_dir=run.run_dir, trainer=job, metrics={})
                if step >= job.steps:
                    break
            if t.save_strategy == "epoch" and step < job.steps:
                text_to_image_state.save_checkpoint(job, step)
    losses = [row["loss"] for row in job.log_history]  # a resumed run's too
    metrics = {"train_loss": sum(losses) / max(len(losses), 1), "train_runtime": time.time() - started}
    metrics.update(callbacks.run_peak_memory(job.log_history))
    _finish(job, run, step, metrics)
    return session.Result(run_dir=run.run_dir, trainer=job, metrics=metrics)


def _epoch_batches(job: Job, epoch: int, skip: int):
    """The epoch's batches, each of one aspect-ratio bucket, in an order fixed by (seed, epoch) alone, so
    that a resumed run, skipping the batches it already trained on, sees the same batches as an
    uninterrupted one (ft.tasks.text_to_image.buckets.epoch_batches)."""
    import torch
    from torch.utils.data import DataLoader

    from ft.tasks.text_to_image import batches as image_batches
    from ft.tasks.text_to_image import buckets

    t, acc = job.cfg.training, job.acc
    job.dataset.epoch = epoch  # the crops and flips of the epoch (batches.Examples)
    order = buckets.epoch_batches(
        job.dataset.bucket_of, t.per_device_train_batch_size, acc.num_processes, t.seed, epoch
    )
    loader = DataLoader(
        job.dataset,
        batch_sampler=order,  # every process's batches; Accelerate gives each process its own
        collate_fn=image_batches.collate,
        num_workers=t.dataloader_num_workers,
        # its iterator's seed comes from here, not from the global RNG, whose state the checkpoints restore
        generator=torch.Generator().manual_seed(t.seed + epoch),
    )
    loader = job.acc.prepare_data_loader(loader)
    return job.acc.skip_first_batches(loader, skip) if skip else loader


def batch_loss(job: Job, batch: dict):
    """The batch's diffusion loss; with prior preservation, instance loss + prior_loss_weight * class loss."""
    import torch

    from ft.tasks.text_to_image import pipeline as diffusion

    parts, d, device = job.parts, job.cfg.diffusion, job.acc.device
    with torch.no_grad():
        latents = batch["latents"] if "latents" in batch else diffusion.latents_of(parts, batch["pixel_values"])
    # caption dropout: drawn from the global RNG, whose state the checkpoints keep (a resumed run draws alike)
    dropped = torch.rand(len(batch["caption"])) < d.caption_dropout if d.caption_dropout else None
    if "prompt_embeds" in batch:
        embeds, pooled = batch["prompt_embeds"], batch.get("pooled")
        if dropped is not None and dropped.any():
            empty, empty_pooled = job.dataset.empty_caption
            embeds = torch.where(dropped.to(embeds.device)[:, None, None], empty.to(embeds), embeds)
            if pooled is not None:
                pooled = torch.where(dropped.to(pooled.device)[:, None], empty_pooled.to(pooled), pooled)
    else:
        captions = batch["caption"] if dropped is None else ["" if x else c for x, c in zip(dropped, batch["caption"])]
        with torch.set_grad_enabled(d.train_text_encoder):
            embeds, pooled = diffusion.encode_prompts(parts, captions, device, job.models[1:] or None)
    latents, embeds = latents.to(device, job.dtype), embeds.to(job.dtype)
    mask = diffusion.latent_mask(batch["mask"], latents) if "mask" in batch else None
    if parts.flow:
        from ft.tasks.text_to_image import flow

        losses = flow.flow_loss(
            parts, job.models[0], latents, embeds, pooled.to(job.dtype), d, per_example=True, mask=mask
        )
    else:
        added = None
        if parts.xl:
            sizes = batch["original_size"], batch["crop_top_left"], batch["target_size"]
            ids = diffusion.time_ids(*sizes, device, job.dtype)
            added = {"text_embeds": pooled.to(job.dtype), "time_ids": ids}
        losses = diffusion.diffusion_loss(parts, job.models[0], latents, embeds, added, d, per_example=True, mask=mask)
    if not d.with_prior_preservation:
        return losses.mean()
    instance, prior = losses.chunk(2)
    return instance.mean() + d.prior_loss_weight * prior.mean()


def validate(job: Job, step: int, prompts: list[str]) -> list:
    """Render `prompts` with the LoRA trained so far into samples/step-<N>-<i>.png and TensorBoard (rank 0)."""
    from ft.tasks.text_to_image import render as diffusion_render

    acc, d, rendered = job.acc, job.cfg.diffusion, []
    if acc.is_main_process:
        models = [acc.unwrap_model(m) for m in job.models]
        encoders = models[1:]
        for model in models:
            model.eval()
        pipe = diffusion_render.pipeline_from_parts(job.parts, models[0], encoders, job.dtype)
        with acc.autocast():
            rendered = diffusion_render.render(
                pipe,
                prompts,
                d.resolution,
                d.num_inference_steps,
                d.guidance_scale,
                job.cfg.training.seed,
                d.max_sequence_length,
            )
        for model in models:
            model.train()
        folder = job.run_dir / diffusion_render.SAMPLES
        folder.mkdir(exist_ok=True)
        for i, image in enumerate(rendered):
            image.save(folder / f"step-{step}-{i}.png")
        if job.trackers:
            import numpy as np

            writer = acc.get_tracker("tensorboard", unwrap=True)
            writer.add_images("validation", np.stack([np.asarray(im) for im in rendered]), step, dataformats="NHWC")
    acc.wait_for_everyone()
    return rendered


def _finish(job: Job, run, step: int, metrics: dict) -> None:
    """pytorch_lora_weights.safetensors, the run's log and metrics, loss plot, samples and model card (rank 0)."""
    from ft.tasks.text_to_image import finish as text_to_image_finish
    from ft.tasks.text_to_image import kohya
    from ft.tasks.text_to_image import pipeline as diffusion

    acc, run_dir = job.acc, job.run_dir
    acc.wait_for_everyone()
    if acc.is_main_process:
        models = [acc.unwrap_model(m) for m in job.models]
        diffusion.save_lora(run_dir, job.parts.pipeline_class(), models[0], models[1:] or None)
        if job.ema is not None:  # the EMA weights in the same format, beside; the trained ones stay in the models
            job.ema.store(job.params)
            job.ema.copy_to(job.params)
            diffusion.save_lora(run_dir, job.parts.pipeline_class(), models[0], models[1:] or None, EMA_WEIGHTS)
            job.ema.restore(job.params)
        if job.cfg.diffusion.save_kohya:
            kohya.save(run_dir, job.cfg)
        (run_dir / "train_results.json").write_text(json.dumps(metrics, indent=1))
        state = {"global_step": step, "log_history": job.log_history}
        (run_dir / rundir.TRAINER_STATE).write_text(json.dumps(state, indent=1))  # marks the run finished
        rundir.plot_loss(job.log_history, run_dir / rundir.LOSS_PLOT)
        text_to_image_finish.finish(job, metrics)
    acc.end_training()


def every(value: float, total: int) -> int:
    """An int number of steps, or a float < 1 as a ratio of the run (ft's logging/save/eval_steps)."""
    return max(int(value) if value >= 1 else math.ceil(value * total), 1)
