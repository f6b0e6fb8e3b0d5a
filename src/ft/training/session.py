"""One training run, as every task runs it (the layer above rules/, data/, models/, run/ and finish/): the
quick checks, the run directory (rank 0 decides: new, continued from a checkpoint, or replaced), training
under preemption handling, and the finish (metrics, weights, loss plot, summary, model card, optional push).
A task hands its
`build_trainer(cfg, run_dir, resuming=...)` to `train`, which runs:

    run = start(cfg, command)
    with run.setup():                        # the run dir exists; removed again if setup fails
        trainer = build_trainer(cfg, run.run_dir, resuming=run.resuming)
    return run.train(trainer)
"""

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ft import rules
from ft.config import registry
from ft.config.saved import to_yaml
from ft.data import detect
from ft.errors import FtError
from ft.models import adapters
from ft.run import distributed, hardware, resume, rundir


@dataclass
class Result:
    run_dir: Path
    trainer: object  # the task's transformers Trainer; its .model is the trained (PEFT) model
    metrics: dict


def train(cfg, command: list[str] | None, build_trainer) -> Result:
    """A task's whole run: `build_trainer(cfg, run_dir, resuming=...)` builds its trainer in the new run dir."""
    run = start(cfg, command)
    with run.setup():
        trainer = build_trainer(cfg, run.run_dir, resuming=run.resuming)
    return run.train(trainer)


def check(cfg, hw, launching: bool = False) -> None:
    """The pre-run checks of every run, in the training process or before ft relaunches itself: what the
    config asks of this machine, and whether the model and data can be had."""
    rules.check_machine(cfg, hw, launching=launching)
    rules.check_inputs(cfg)


def start(cfg, command: list[str] | None = None) -> "Run":
    """`command`: the command line that started the run, echoed in how-to-resume messages."""
    hw = hardware.detect()
    check(cfg, hw)
    ranks = distributed.state(cfg.distributed.timeout_s, cpu=hw.device == "cpu")  # one process or many
    with ranks.main_process_first():  # data.format=auto made concrete (read once) before the config is saved
        cfg = detect.resolved(cfg, announce=ranks.is_main_process)
    run_dir = Path(distributed.shared_value(str(rundir.run_dir_for(cfg)), ranks))  # rank 0's name
    main = ranks.is_main_process
    plan = None
    if main:
        plan = resume.plan(run_dir, to_yaml(cfg), cfg.training.resume, cfg.training.overwrite, ranks.num_processes)
    checkpoint = distributed.shared_value(plan.checkpoint if main else None, ranks)
    return Run(cfg, command, run_dir, ranks, plan, checkpoint)


@dataclass
class Run:
    cfg: object
    command: list[str] | None
    run_dir: Path
    ranks: object  # accelerate's PartialState
    plan: object  # resume.RunPlan on rank 0, None elsewhere
    checkpoint: str | None  # the checkpoint training continues from

    @property
    def main(self) -> bool:
        return self.ranks.is_main_process

    @property
    def resuming(self) -> bool:
        return self.checkpoint is not None

    @contextlib.contextmanager
    def setup(self):
        """Inside: the run dir exists (rank 0 made it, the others waited). If setup fails, what was
        made is removed again."""
        cfg = self.cfg
        with rundir.new_run_dir(self.run_dir, to_yaml(cfg), self.plan, create=self.main):
            if self.main:
                print(f"ft: run directory {self.run_dir}", flush=True)
            distributed.wait_for_everyone(self.ranks, "run directory", cfg.distributed.timeout_s)
            yield self

    def train(self, trainer) -> Result:
        """Train (continuing the checkpoint, if any), then evaluate, save and finish."""
        cfg, run_dir, main = self.cfg, self.run_dir, self.main
        how_to_resume = resume.resume_command(self.command, run_dir, cfg)
        if main:
            _print_trainable(trainer.model)
            if cfg.training.run_name is None:
                print(f"ft: to resume this run after an interruption: {how_to_resume}", flush=True)
        from ft.run import callbacks  # imports transformers: after the quick checks
        from ft.run.preemption import PreemptionCallback

        preemption = PreemptionCallback()
        trainer.add_callback(preemption)
        trainer.add_callback(callbacks.LogHistoryCallback(run_dir))
        with preemption.handling_signals():
            try:
                train_output = trainer.train(resume_from_checkpoint=self.checkpoint)
            except FtError:  # raised mid-step (e.g. by a reward function): end the progress bar's line first
                print(file=sys.stderr, flush=True)
                raise
        if preemption.received:
            step = trainer.state.global_step
            if main:
                print(
                    f"ft: stopped by {preemption.received} at step {step}; checkpoint saved to "
                    f"{run_dir / f'{rundir.CHECKPOINT_PREFIX}{step}'}\nft: to resume: {how_to_resume}",
                    flush=True,
                )
            return Result(run_dir=run_dir, trainer=trainer, metrics={})
        train_output.metrics.update(callbacks.run_peak_memory(trainer.state.log_history))
        metrics = _evaluate(trainer, train_output)
        distributed.gather_for_final_save(trainer)
        trainer.save_model(str(run_dir))  # every rank: ZeRO-3 and FSDP gather the weights; rank 0 writes
        if adapters.is_pissa(cfg.peft) and main:
            adapters.save_pissa_as_lora(trainer.model, run_dir)
        trainer.save_state()
        distributed.report_ranks(trainer, self.ranks)
        if main:
            rundir.plot_loss(trainer.state.log_history, run_dir / rundir.LOSS_PLOT)
            print_summary(run_dir, metrics)
            if self.ranks.num_processes == 1:  # generation under ZeRO-3 / FSDP needs every rank
                from ft.finish import answers

                metrics.update((registry.get(cfg.task).report or answers.report)(cfg, trainer))
            _finish(cfg, run_dir, trainer, metrics)
        return Result(run_dir=run_dir, trainer=trainer, metrics=metrics)


def _evaluate(trainer, train_output) -> dict:
    """The train metrics, the untrained model's eval loss (and, for GRPO, mean reward) from eval_on_start,
    and the final eval."""
    metrics = dict(train_output.metrics)
    base = _untrained_eval(trainer.state.log_history)
    if base:
        metrics.update(base)
        trainer.save_metrics("base", base)
    trainer.save_metrics("train", train_output.metrics)
    if trainer.eval_dataset is not None:
        final_eval = _eval_at_last_step(trainer) or trainer.evaluate()
        metrics.update(final_eval)
        trainer.save_metrics("eval", final_eval)
    return metrics


def _eval_at_last_step(trainer) -> dict:
    """The metrics of the eval the trainer ran at its last step (eval_steps dividing the run, eval_strategy=epoch),
    as evaluate() returns them: the model has not changed since, so evaluating again would only repeat it (the
    default recipe evaluates at steps 100 and 200 of 200). {} when the last step was not evaluated, or when early
    stopping reloaded the best checkpoint at the end."""
    if trainer.args.load_best_model_at_end:
        return {}
    last = next((row for row in reversed(trainer.state.log_history) if "eval_runtime" in row), None)
    if last is None or last.get("step") != trainer.state.global_step or trainer.state.global_step == 0:
        return {}
    return {key: value for key, value in last.items() if key != "step"}


def total_optimizer_steps(cfg, num_examples: int) -> int:
    """The run's optimizer steps as the Trainer will count them (before packing changes the rows)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batches = math.ceil(num_examples / (t.per_device_train_batch_size * world))
    per_epoch = max(math.ceil(batches / t.gradient_accumulation_steps), 1)
    return math.ceil(t.num_train_epochs * per_epoch)


def _untrained_eval(log_history: list[dict]) -> dict:
    """The step-0 evaluation's metrics (eval_on_start) as base_*: base_loss, and each task's own (GRPO's
    reward, DPO's rewards/accuracies, ...); a resumed run finds them in the restored log."""
    start = next((row for row in log_history if "eval_loss" in row and row.get("step") == 0), {})
    timings = ("runtime", "samples_per_second", "steps_per_second")
    return {
        f"base_{key[5:]}": value
        for key, value in start.items()
        if key.startswith("eval_") and not key.endswith(timings)
    }


def _finish(cfg, run_dir: Path, trainer, metrics: dict) -> None:
    """The model card (replacing PEFT's stub README.md), then the push if the recipe asks for one."""
    from ft.finish import card, hub

    (registry.get(cfg.task).card or card.write)(cfg, run_dir, trainer, metrics)
    if cfg.hub.push:
        uploaded = hub.push(run_dir, cfg.hub.repo_id, private=cfg.hub.private, revision=cfg.hub.revision)
        print(f"ft: pushed {len(uploaded)} files to {cfg.hub.repo_id}", flush=True)


def _print_trainable(model) -> None:
    def numel(p):  # ZeRO-3 partitions parameters; ds_numel is the full size
        return getattr(p, "ds_numel", p.numel())

    trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(numel(p) for p in model.parameters())
    print(f"ft: trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)", flush=True)


def print_summary(run_dir: Path, metrics: dict) -> None:
    """The run's closing lines: time and train loss, the eval against the untrained model, peak memory, where."""
    lines = [
        f"ft: done in {metrics.get('train_runtime', 0):.1f}s, train loss {metrics.get('train_loss', float('nan')):.4f}"
    ]
    if "eval_reward" in metrics:  # GRPO: its eval loss is no measure of the model
        start = f"{metrics['base_reward']:.4f} (start) -> " if "base_reward" in metrics else ""
        lines.append(f"ft: eval mean reward {start}{metrics['eval_reward']:.4f}")
    elif "base_loss" in metrics and "eval_loss" in metrics:
        ratio = metrics["eval_loss"] / metrics["base_loss"]
        lines.append(
            f"ft: eval loss {metrics['base_loss']:.4f} (untrained) -> {metrics['eval_loss']:.4f} (trained), ratio "
            f"{ratio:.2f}"
        )
    elif "eval_loss" in metrics:
        lines.append(f"ft: eval loss {metrics['eval_loss']:.4f}")
    from ft.finish.card import peak_memory_text

    peak = peak_memory_text(metrics)
    if peak:
        lines.append(f"ft: peak memory {peak}")
    lines.append(f"ft: saved to {run_dir}")
    print("\n".join(lines), flush=True)
