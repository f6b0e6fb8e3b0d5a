"""ft's trainer callbacks, each switched on from the `callbacks` config section.

SampleGenerationCallback  greedy generations on fixed prompts at every evaluation: console,
                          <run dir>/samples.jsonl, TensorBoard text, W&B table
ThroughputCallback        tokens/s and peak memory (GPU, or CPU RSS) added to every training log
transformers' EarlyStoppingCallback  stops when eval_loss stops improving
AdaLoraRankCallback       AdaLoRA's rank allocation every optimizer step (peft.method=adalora)
LogHistoryCallback        every logged row appended to <run dir>/log_history.jsonl as it is logged (always on)
"""

import json
import time
from pathlib import Path

from transformers import EarlyStoppingCallback, TrainerCallback

from ft.models import adapters
from ft.run import rundir


class SampleGenerationCallback(TrainerCallback):
    def __init__(self, prompts: list[str], run_dir: Path, max_new_tokens: int):
        self.prompts = list(prompts)
        self.path = Path(run_dir) / rundir.SAMPLES
        self.tensorboard_dir = Path(run_dir) / rundir.TENSORBOARD
        self.max_new_tokens = max_new_tokens
        self._writer = None

    def generate(self, model, tokenizer) -> list[str]:
        import torch

        was_training = model.training
        model.eval()
        completions = []
        try:
            for prompt in self.prompts:
                ids = tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}],
                    add_generation_prompt=True,
                    return_tensors="pt",
                    return_dict=True,
                ).to(model.device)
                with torch.no_grad():
                    out = model.generate(
                        **ids, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                    )
                completions.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
        finally:
            model.train(was_training)
        return completions

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        completions = self.generate(model, processing_class)
        rows = [{"step": state.global_step, "prompt": p, "completion": c} for p, c in zip(self.prompts, completions)]
        with self.path.open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        for row in rows:
            print(f"ft: sample @ step {row['step']}: {row['prompt']!r} -> {row['completion']!r}", flush=True)
        self._log_to_trackers(args, state.global_step, rows)

    def _log_to_trackers(self, args, step: int, rows: list[dict]) -> None:
        text = "\n\n".join(f"**{r['prompt']}**\n\n    {r['completion']}" for r in rows)
        if "tensorboard" in args.report_to:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.tensorboard_dir))
            self._writer.add_text("samples", text, step)
            self._writer.flush()
        if "wandb" in args.report_to:
            import wandb

            if wandb.run is not None:
                table = wandb.Table(
                    columns=["step", "prompt", "completion"],
                    data=[[r["step"], r["prompt"], r["completion"]] for r in rows],
                )
                wandb.run.log({"samples": table}, commit=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ThroughputCallback(TrainerCallback):
    """Adds `tokens_per_second` (real, non-padding input tokens since the previous log) and memory to
    each training log: `gpu_peak_memory_gb` (peak allocated since the previous log) on CUDA,
    `cpu_rss_gb` and `cpu_peak_rss_gb` (process high-water mark) otherwise. Needs the trainer to
    count tokens (include_num_input_tokens_seen, which ft sets) and must run before the reporting
    callbacks so that they see the numbers (ft.tasks.sft puts it first)."""

    def __init__(self):
        self._last_time = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time, self._last_tokens = time.perf_counter(), state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._last_time is None:
            return  # eval and end-of-training summaries are not training steps
        now = time.perf_counter()
        metrics = {
            "tokens_per_second": (state.num_input_tokens_seen - self._last_tokens) / max(now - self._last_time, 1e-9)
        }
        metrics.update(memory_metrics())
        self._last_time, self._last_tokens = now, state.num_input_tokens_seen
        logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)  # the trainer stored its copy before calling us


class AdaLoraRankCallback(TrainerCallback):
    """Drives AdaLoRA's rank allocation, which the Trainer never calls.

    PEFT's contract: `update_and_allocate(step)` after `backward()` and before `zero_grad()`, every
    step. `on_optimizer_step` runs right after `optimizer.step()` and before `model.zero_grad()`, so
    the gradients it needs are still there. The current rank budget (ranks left across all adapted
    layers) goes into every log entry as `adalora_rank_budget`.
    """

    def __init__(self, peft_cfg):
        self.peft_cfg = peft_cfg

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # The config was built from an estimate of the run length; the Trainer now knows it exactly
        # (packing, for one, changes the number of batches).
        config = model.peft_config[model.active_adapter]
        if state.max_steps != config.total_step:
            config.tinit, config.tfinal = adapters.adalora_schedule(self.peft_cfg, state.max_steps)
            config.total_step = state.max_steps

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if state.log_history and logs is not None and "loss" in logs:
            budget = rank_budget(model)
            state.log_history[-1]["adalora_rank_budget"] = budget
            print(f"ft: step {state.global_step}: AdaLoRA rank budget {budget}", flush=True)


class LogHistoryCallback(TrainerCallback):
    """Appends each row of the trainer's log history to the run dir's log_history.jsonl when it is logged
    (trainer_state.json holds it only at a checkpoint and at the end). Added last, so the row carries what
    the other callbacks added to it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or logs is None:
            return
        last = state.log_history[-1] if state.log_history else {}
        rundir.append_log(
            self.run_dir, dict(last) if last.get("step") == state.global_step else {**logs, "step": state.global_step}
        )


def rank_budget(model) -> int:
    """Ranks currently kept across all AdaLoRA layers (the initial budget until the first pruning)."""
    config = model.peft_config[model.active_adapter]
    if config.rank_pattern:
        return int(sum(sum(mask) for mask in config.rank_pattern.values()))
    return model.base_model.rankallocator.init_bgt


def run_peak_memory(log_history: list[dict]) -> dict:
    """The whole run's peak memory of this process, for its summary, all_results.json and card: on CUDA the
    most torch allocated (the largest of the per-log peaks ThroughputCallback logged, and the peak since its
    last log), otherwise the process's resident high-water mark, which the OS keeps for the whole process."""
    now = memory_metrics()
    key = "gpu_peak_memory_gb" if "gpu_peak_memory_gb" in now else "cpu_peak_rss_gb"
    logged = [row[key] for row in log_history if isinstance(row.get(key), (int, float))]
    return {key: max([now[key], *logged])}


def memory_metrics() -> dict:
    import torch

    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
        return {"gpu_peak_memory_gb": round(peak, 3)}
    import psutil

    from ft.run import hardware

    rss = psutil.Process().memory_info().rss / 2**30
    return {"cpu_rss_gb": round(rss, 3), "cpu_peak_rss_gb": round(hardware.peak_resident_gib(), 3)}


def build(cfg, run_dir: Path) -> list[TrainerCallback]:
    """The callbacks the config switches on, for SFTTrainer(callbacks=...)."""
    c = cfg.callbacks
    callbacks = []
    if c.throughput:
        callbacks.append(ThroughputCallback())
    if c.sample_prompts:
        callbacks.append(SampleGenerationCallback(c.sample_prompts, run_dir, c.sample_max_new_tokens))
    if c.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(c.early_stopping_patience, c.early_stopping_threshold))
    if cfg.peft.method == "adalora":
        callbacks.append(AdaLoraRankCallback(cfg.peft))
    return callbacks
