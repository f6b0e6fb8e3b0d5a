"""Runs that die: kill -9 at several points and resume, SIGTERM preemption, checkpoint validation,
the run-dir rules of training.resume / training.overwrite."""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import WarmProcess, free_port, start_ft
from ft.run import resume

# A tiny run that checkpoints every 2 steps and logs every step.
TINY = [
    "training.max_steps=12",
    "training.save_steps=2",
    "training.logging_steps=1",
    "logging=none",
    "data.synthetic.num_examples=200",
    "data.eval_size=0",
    "training.per_device_train_batch_size=4",
    "training.max_length=64",
]


def start(out: Path, name: str, *extra: str) -> tuple[WarmProcess, Path]:
    """The real CLI in the background, its output (stdout + stderr) going to a log file."""
    log = out / f"{name}-{time.monotonic_ns()}.log"
    run = [*TINY, f"training.output_dir={out}", f"training.run_name={name}", *extra]
    return start_ft("train", *run, log=log), log


def wait_for(proc: WarmProcess, condition, timeout: float = 300, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before the kill point"
        assert time.monotonic() < deadline, "timed out waiting for the kill point"
        time.sleep(poll)


def loss_lines(log: Path) -> int:
    return log.read_text().count("'loss':")


def kill9(proc: WarmProcess) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def finish(out: Path, name: str, *extra: str) -> str:
    proc, log = start(out, name, *extra)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    return log.read_text()


def step_losses(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {row["step"]: row["loss"] for row in history if "loss" in row}


def adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    finish(out, "run")
    return out / "run"


@pytest.mark.slow
def test_kill_9_at_four_points_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"

    # 1. After the first step, before any checkpoint: resume=auto starts again from step 0, saying so.
    proc, log = start(tmp_path, "run")
    wait_for(proc, lambda: loss_lines(log) >= 1)
    kill9(proc)
    assert not resume.checkpoints(run_dir)

    # 2. Mid-interval: checkpoint-4 is complete, step 5 is done, step 6 is not saved.
    proc, log = start(tmp_path, "run")
    wait_for(proc, lambda: loss_lines(log) >= 5)
    kill9(proc)
    assert "has no complete checkpoint: starting this run again from step 0" in log.read_text()
    assert resume.last_complete_checkpoint(run_dir) == run_dir / "checkpoint-4"

    # 3. During the save of checkpoint-8: kill as soon as its directory appears.
    proc, log = start(tmp_path, "run")
    wait_for(proc, lambda: (run_dir / "checkpoint-8").is_dir())
    kill9(proc)
    assert "resuming from" in log.read_text() and "checkpoint-4" in log.read_text()
    torn = run_dir / "checkpoint-8"
    if resume.incomplete_reason(torn) is None:  # the save won the race: tear it the way a crash would
        with open(torn / "optimizer.pt", "r+b") as f:
            f.truncate(f.seek(0, 2) // 2)
        print("checkpoint-8 completed before the kill; its optimizer.pt was truncated instead")
    else:
        print(f"killed during the save of checkpoint-8: {resume.incomplete_reason(torn)}")
    assert resume.incomplete_reason(torn) is not None

    # 4. Just after step 11, then resume to the end.
    proc, log = start(tmp_path, "run")
    wait_for(proc, lambda: loss_lines(log) >= 5)  # resumed from checkpoint-6: steps 7..11
    kill9(proc)
    text = log.read_text()
    assert "skipping incomplete checkpoint" in text and "checkpoint-8" in text
    assert f"resuming from {run_dir / 'checkpoint-6'}" in text

    text = finish(tmp_path, "run")
    assert f"resuming from {run_dir / 'checkpoint-10'}" in text

    expected, actual = step_losses(uninterrupted), step_losses(run_dir)
    assert sorted(actual) == list(range(1, 13)) and sorted(expected) == list(range(1, 13))
    assert max(abs(actual[s] - expected[s]) for s in expected) <= 1e-5, (actual, expected)
    want, got = adapter(uninterrupted), adapter(run_dir)
    assert want.keys() == got.keys()
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    print(f"max |adapter diff| = {worst:.2e}")
    assert worst <= 1e-5
    assert not list(run_dir.rglob("*.bin")) or all(p.name == "training_args.bin" for p in run_dir.rglob("*.bin"))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_0_and_resume_continues(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    no_scheduled_saves = ["training.save_steps=1000"]  # the only checkpoint is the one SIGTERM asks for
    proc, log = start(tmp_path, "run", *no_scheduled_saves)
    wait_for(proc, lambda: loss_lines(log) >= 3, poll=0.05)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    print(f"exited {time.monotonic() - signalled:.1f}s after SIGTERM")
    text = log.read_text()
    assert "SIGTERM received" in text and "ft: to resume: python -m ft train" in text
    (checkpoint,) = resume.checkpoints(run_dir)
    step = int(checkpoint.name.split("-")[1])
    assert 3 <= step < 12 and resume.incomplete_reason(checkpoint) is None
    assert f"stopped by SIGTERM at step {step}" in text
    assert not (run_dir / "adapter_model.safetensors").exists(), "a preempted run is not finished"

    text = finish(tmp_path, "run", *no_scheduled_saves)
    assert f"resuming from {checkpoint}" in text
    assert json.loads((run_dir / "trainer_state.json").read_text())["global_step"] == 12
    expected, actual = step_losses(uninterrupted), step_losses(run_dir)
    assert sorted(actual) == list(range(1, 13))
    assert max(abs(actual[s] - expected[s]) for s in expected) <= 1e-5, (actual, expected)


def test_incomplete_checkpoints_are_detected(tmp_path):
    import torch
    from safetensors.torch import save_file

    good = tmp_path / "checkpoint-2"
    good.mkdir()
    save_file({"w": torch.ones(64, 64)}, good / "adapter_model.safetensors")
    torch.save({"state": {}}, good / "optimizer.pt")
    (good / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert resume.incomplete_reason(good) is None

    no_state = tmp_path / "checkpoint-4"
    no_state.mkdir()
    save_file({"w": torch.ones(64, 64)}, no_state / "adapter_model.safetensors")
    assert "trainer_state.json" in resume.incomplete_reason(no_state)

    torn = tmp_path / "checkpoint-6"
    torn.mkdir()
    for name in ("adapter_model.safetensors", "optimizer.pt", "trainer_state.json"):
        (torn / name).write_bytes((good / name).read_bytes())
    with open(torn / "adapter_model.safetensors", "r+b") as f:
        f.truncate(1000)
    assert "adapter_model.safetensors is truncated" in resume.incomplete_reason(torn)
    assert resume.last_complete_checkpoint(tmp_path) == good

    # FSDP's sharded checkpoint: torch.distributed.checkpoint folders, complete once their .metadata is written
    sharded = tmp_path / "checkpoint-8"
    for folder in (resume.SHARDED_WEIGHTS, resume.SHARDED_OPTIMIZER):
        (sharded / folder).mkdir(parents=True)
        (sharded / folder / "__0_0.distcp").write_bytes(b"shard")
    (sharded / "trainer_state.json").write_text(json.dumps({"global_step": 8}))
    assert f"{resume.SHARDED_WEIGHTS} has no .metadata" in resume.incomplete_reason(sharded)
    (sharded / resume.SHARDED_WEIGHTS / ".metadata").write_bytes(b"metadata")
    assert f"{resume.SHARDED_OPTIMIZER} has no .metadata" in resume.incomplete_reason(sharded)
    (sharded / resume.SHARDED_OPTIMIZER / ".metadata").write_bytes(b"metadata")
    assert resume.incomplete_reason(sharded) is None
    assert resume.last_complete_checkpoint(tmp_path) == sharded

    # 2 processes: rank 0 wrote trainer_state.json while rank 1 had not written its RNG state yet (found by a
    # kill -9 under FSDP: rng_state_1.pth was empty; the resumed rank 1 failed to load it)
    (sharded / resume.SHARDED_WEIGHTS / "__1_0.distcp").write_bytes(b"shard")
    torch.save({"cpu": torch.get_rng_state()}, sharded / "rng_state_0.pth")
    assert "RNG states of 1 of 2 processes" in resume.incomplete_reason(sharded)
    (sharded / "rng_state_1.pth").write_bytes(b"")
    assert "rng_state_1.pth is truncated" in resume.incomplete_reason(sharded)
    torch.save({"cpu": torch.get_rng_state()}, sharded / "rng_state_1.pth")
    assert resume.incomplete_reason(sharded) is None

    # DDP (no shards to count): the processes resuming it say how many RNG states a complete save holds
    ddp = tmp_path / "checkpoint-10"
    shutil.copytree(good, ddp)
    torch.save({"cpu": torch.get_rng_state()}, ddp / "rng_state_0.pth")
    assert "RNG states of 1 of 2 processes" in resume.incomplete_reason(ddp, processes=2)
    assert resume.last_complete_checkpoint(tmp_path, processes=2) == sharded
    torch.save({"cpu": torch.get_rng_state()}, ddp / "rng_state_1.pth")
    assert resume.incomplete_reason(ddp, processes=2) is None
    # saved by one process (rng_state.pth): more processes resume it with the Trainer's warning, as before
    (ddp / "rng_state_0.pth").rename(ddp / "rng_state.pth")
    (ddp / "rng_state_1.pth").unlink()
    assert resume.incomplete_reason(ddp, processes=2) is None


def test_config_differences_ignore_where_and_whether_to_resume():
    old = "training:\n  learning_rate: 0.001\n  run_name: null\n  resume: auto\npeft:\n  r: 8\n"
    new = "training:\n  learning_rate: 0.002\n  run_name: x\n  resume: never\npeft:\n  r: 8\n"
    assert resume.config_differences(old, new) == ["training.learning_rate: 0.001 -> 0.002"]


def test_overwrite_replaces_a_finished_run_but_only_an_ft_one(tmp_path):
    from ft import config
    from ft.run import rundir

    cfg = config.compose([f"training.output_dir={tmp_path}", "training.run_name=r", "training.overwrite=true"])
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(config.to_yaml(cfg))
    (run_dir / "trainer_state.json").write_text("{}")
    plan = resume.plan(run_dir, config.to_yaml(cfg), "auto", overwrite=True)
    assert plan.replace and plan.checkpoint is None
    with pytest.raises(RuntimeError):  # a setup failure leaves the old run as it was
        with rundir.new_run_dir(run_dir, config.to_yaml(cfg), plan):
            raise RuntimeError("setup failed")
    assert (run_dir / "trainer_state.json").exists()
    with rundir.new_run_dir(run_dir, config.to_yaml(cfg), plan):
        pass
    assert [p.name for p in run_dir.iterdir()] == ["config.yaml"]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(Exception, match="not made by ft"):
        resume.plan(tmp_path / "mine", config.to_yaml(cfg), "auto", overwrite=True)


def test_resume_command_names_the_run_and_drops_overwrite(tmp_path):
    from ft import config

    cfg = config.compose([])
    command = ["python", "-m", "ft", "train", "training.overwrite=true", "peft.r=8"]
    assert resume.resume_command(command, tmp_path / "default-20250101-000000", cfg) == (
        "python -m ft train peft.r=8 training.run_name=default-20250101-000000"
    )


@pytest.fixture
def restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_second_signal_aborts_at_once(restore_signal_handlers):
    from ft.run.preemption import PreemptionCallback

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as if started from a terminal
    callback = PreemptionCallback()
    with callback.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert callback.received == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored(restore_signal_handlers):
    """A process started with SIGINT ignored (nohup, a background job) is not stopped by it."""
    from ft.run.preemption import PreemptionCallback

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.getsignal(signal.SIGTERM)
    callback = PreemptionCallback()
    with callback.handling_signals():
        os.kill(os.getpid(), signal.SIGINT)
        assert callback.received is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert callback.received == "SIGTERM"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is previous_term


def _two_ranks(rank: int, port: int, results) -> None:
    import torch
    import torch.distributed as dist

    from ft.run.preemption import PreemptionCallback

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    callback = PreemptionCallback()
    before = callback.any_rank_received(torch.device("cpu"))
    if rank == 0:
        callback.received = "SIGTERM"  # only rank 0 got the signal so far
    results[rank] = (before, callback.any_rank_received(torch.device("cpu")))
    dist.destroy_process_group()


@pytest.mark.distributed
def test_every_rank_stops_at_the_same_step_when_one_got_the_signal():
    import torch.multiprocessing as mp

    port = free_port()
    results = mp.Manager().dict()
    mp.spawn(_two_ranks, args=(port, results), nprocs=2)
    assert dict(results) == {0: (False, True), 1: (False, True)}
