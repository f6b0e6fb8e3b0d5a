"""`ft train`, in this process or relaunched: with a multi-process strategy and no processes started yet,
the command relaunches itself under `accelerate launch` (after the pre-run checks, so that a mistake is
refused once, here, and not by every rank); otherwise the task trains in this process."""

from ft.config import registry
from ft.errors import FtError
from ft.training import session


def run(cfg, overrides: list[str]) -> None:
    from ft.run import distributed

    if cfg.distributed.strategy != "single" and not distributed.is_launched():
        _launch(cfg, overrides)
        return
    try:
        train(cfg, ["python", "-m", "ft", "train", *overrides])
    finally:
        distributed.close()


def train(cfg, command: list[str] | None = None):
    """The task's run in this process: its own loop, or its trainer in ft's session. Returns the
    session's Result (run dir, trainer, metrics)."""
    task = registry.get(cfg.task)
    if task.train is not None:
        return task.train(cfg, command)
    return session.train(cfg, command, task.build_trainer)


def _launch(cfg, overrides: list[str]) -> None:
    from ft.config.saved import to_yaml
    from ft.data import detect
    from ft.run import distributed, hardware, resume, rundir

    hw = hardware.detect()
    session.check(cfg, hw, launching=True)
    cfg = detect.resolved(cfg)  # as every rank will, so that resume compares the same config
    run_dir = rundir.run_dir_for(cfg)
    if cfg.distributed.machine_rank == 0:  # refuse now what rank 0 would refuse after the launch
        resume.plan(run_dir, to_yaml(cfg), cfg.training.resume, cfg.training.overwrite)
    code = distributed.relaunch(cfg, run_dir, overrides, hw.num_gpus)
    if code != 0:
        raise FtError(f"the training processes failed (exit code {code}); their errors are above")
