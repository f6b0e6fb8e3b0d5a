"""The training tasks. Each task is one module here with a `train(cfg, command)` that reads top to
bottom (tasks/sft.py is the model), reusing the shared machinery: ft.config, ft.rules, ft.run,
ft.models, ft.data and ft.finish. `task=NAME` picks it (the schema's TASKS lists the names).
"""

import importlib

from ft.errors import FtError


def run(cfg, overrides: list[str]) -> None:
    """`ft train`: with a multi-process strategy and no processes started yet, relaunch this command
    under `accelerate launch`; otherwise run the task's training in this process."""
    from ft.run import distributed

    if cfg.distributed.strategy != "single" and not distributed.is_launched():
        _launch(cfg, overrides)
        return
    task = importlib.import_module(f"ft.tasks.{cfg.task}")
    try:
        task.train(cfg, command=["python", "-m", "ft", "train", *overrides])
    finally:
        distributed.close()


def _launch(cfg, overrides: list[str]) -> None:
    from ft import rules
    from ft.config import to_yaml
    from ft.data import detect
    from ft.run import distributed, hardware, resume, rundir

    hw = hardware.detect()
    rules.check_machine(cfg, hw, launching=True)
    detect.resolve(cfg)  # as every rank will, so that resume compares the same config
    run_dir = rundir.run_dir_for(cfg)
    if cfg.distributed.machine_rank == 0:  # refuse now what rank 0 would refuse after the launch
        resume.plan(run_dir, to_yaml(cfg), cfg.training.resume, cfg.training.overwrite)
    code = distributed.relaunch(cfg, run_dir, overrides, hw.num_gpus)
    if code != 0:
        raise FtError(f"the training processes failed (exit code {code}); their errors are above")
