"""What a text-to-image run keeps between steps and across restarts: its optimizer, and its checkpoints
(Accelerate's save_state / load_state, holding only the LoRA weights, not the frozen base models)."""

import json
import shutil
from pathlib import Path

from ft.run import resume, rundir


def make_optimizer(cfg, params):
    import torch

    o = cfg.optim
    kwargs = dict(
        lr=cfg.training.learning_rate,
        betas=(o.adam_beta1, o.adam_beta2),
        eps=o.adam_epsilon,
        weight_decay=o.weight_decay,
    )
    if "8bit" in o.name:  # adamw_bnb_8bit / adamw_8bit (ft.tasks.text_to_image.rules allows no other 8-bit one)
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def checkpoint_only_the_lora(acc, parts) -> None:
    """save_state / load_state hooks: a checkpoint holds the LoRA weights, not the frozen base models."""
    from ft.tasks.text_to_image import pipeline as diffusion

    pipeline_class = parts.pipeline_class()

    def save(models, weights, output_dir):
        if acc.is_main_process:
            unwrapped = [acc.unwrap_model(m) for m in models]
            diffusion.save_lora(Path(output_dir), pipeline_class, unwrapped[0], unwrapped[1:] or None)
        weights.clear()  # so that Accelerate does not save the whole models as well

    def load(models, input_dir):
        unwrapped = [acc.unwrap_model(m) for m in models]
        diffusion.load_lora_into(Path(input_dir), pipeline_class, unwrapped[0], unwrapped[1:] or None)
        models.clear()

    acc.register_save_state_pre_hook(save)
    acc.register_load_state_pre_hook(load)


def earlier_log(checkpoint: str | None) -> list:
    if not checkpoint:
        return []
    return json.loads((Path(checkpoint) / rundir.TRAINER_STATE).read_text()).get("log_history", [])


def save_checkpoint(job, step: int) -> Path:
    """checkpoint-<step>: LoRA weights, optimizer, LR scheduler and RNG states (Accelerate's save_state),
    then trainer_state.json, written last, which marks it complete (ft.run.resume)."""
    acc = job.acc
    directory = job.run_dir / f"{rundir.CHECKPOINT_PREFIX}{step}"
    acc.save_state(str(directory))
    if acc.is_main_process:
        state = {"global_step": step, "log_history": job.log_history}
        (directory / rundir.TRAINER_STATE).write_text(json.dumps(state, indent=1))
        limit = job.cfg.training.save_total_limit
        for old in resume.checkpoints(job.run_dir)[limit:] if limit else []:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return directory
