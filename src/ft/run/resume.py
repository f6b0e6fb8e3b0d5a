"""What to do with the run directory: start fresh, continue a checkpoint, or refuse.

`training.resume=auto` (the default) continues an unfinished run made by the same config from its
last *complete* checkpoint; transformers' Trainer then restores the weights, optimizer, scheduler,
RNG states, data position and step. A run dir made by a different config, a finished run, or a
directory ft did not make is never overwritten unless `training.overwrite=true` says so.

transformers writes a checkpoint in place (no temp name + rename) and writes trainer_state.json
last, so a checkpoint cut short by a crash lacks it; truncated weight, optimizer and RNG files are
caught by their headers (on several processes, rank 0's trainer_state.json does not wait for the other
ranks' RNG files: a kill -9 once left an empty rng_state_1.pth beside it). Such checkpoints are skipped
with a warning.
"""

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError
from ft.run import rundir

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS = (rundir.ADAPTER_WEIGHTS, "model.safetensors", "model.safetensors.index.json", rundir.LORA_WEIGHTS)
# FSDP's sharded checkpoints: torch.distributed.checkpoint folders, whose .metadata is written last
SHARDED_WEIGHTS, SHARDED_OPTIMIZER = "pytorch_model_fsdp_0", "optimizer_0"
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "optimizer.bin", "scheduler.bin")  # torch.save zips
# The Trainer's RNG states, one per process (rng_state_<rank>.pth) or rng_state.pth: each process writes its own,
# so rank 0's trainer_state.json can be on disk while another rank's file is still empty
RNG_STATES, RNG_STATE_OF_ONE = "rng_state*.pth", "rng_state.pth"
# Keys that may change between the runs of one run dir: how to find it and whether to resume.
NOT_COMPARED = ("training.resume", "training.overwrite", "training.run_name", "training.output_dir")


@dataclass
class RunPlan:
    checkpoint: str | None = None  # passed to Trainer.train(resume_from_checkpoint=...)
    existing: bool = False  # the run dir already holds this run: keep it whatever happens
    replace: bool = False  # training.overwrite=true: clear the old run once setup has succeeded


def incomplete_reason(checkpoint: Path, processes: int = 1) -> str | None:
    """Why a checkpoint directory cannot be resumed from, or None when it is complete. `processes`: how many
    will resume it; each loads its own rng_state_<rank>.pth from a checkpoint saved by several (the Trainer only
    warns when one is missing, and that rank goes on with another random stream)."""
    state_path = checkpoint / rundir.TRAINER_STATE
    if not state_path.is_file():
        return "no trainer_state.json: its save was interrupted"
    try:
        json.loads(state_path.read_text())
    except ValueError:
        return "trainer_state.json is truncated"
    for folder in (SHARDED_WEIGHTS, SHARDED_OPTIMIZER):
        if (checkpoint / folder).is_dir() and not (checkpoint / folder / ".metadata").is_file():
            return f"{folder} has no .metadata: its save was interrupted"
    weights = [checkpoint / name for name in WEIGHTS if (checkpoint / name).is_file()]
    if not weights and not (checkpoint / SHARDED_WEIGHTS).is_dir():
        return f"no model weights ({' or '.join(WEIGHTS[:2])})"
    for path in weights:
        if path.suffix == ".safetensors" and not _safetensors_ok(path):
            return f"{path.name} is truncated or corrupt"
    optimizer = ("optimizer.pt", "optimizer.bin")  # the Trainer's; Accelerate's save_state (task=text_to_image)
    if (
        not any((checkpoint / name).is_file() for name in optimizer)
        and not (checkpoint / SHARDED_OPTIMIZER).is_dir()
        and not list(checkpoint.glob("global_step*"))
    ):
        return "no optimizer.pt"
    rng_states = sorted(checkpoint.glob(RNG_STATES))
    for path in [checkpoint / name for name in TORCH_FILES] + rng_states:
        if path.is_file() and not zipfile.is_zipfile(path):
            return f"{path.name} is truncated or corrupt"
    shards = len(list((checkpoint / SHARDED_WEIGHTS).glob("*.distcp")))  # one per process
    per_process = [path for path in rng_states if path.name != RNG_STATE_OF_ONE]  # rng_state_<rank>.pth
    expected = max(shards, processes if per_process else 1)
    if expected > 1 and len(per_process) < expected:
        return f"RNG states of {len(per_process)} of {expected} processes: its save was interrupted"
    return None


def _safetensors_ok(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np"):  # reads and checks the header against the file size
            return True
    except Exception:
        return False


def checkpoints(run_dir: Path) -> list[Path]:
    """checkpoint-<step> directories, newest first."""
    found = [p for p in run_dir.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)] if run_dir.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)), reverse=True)


def last_complete_checkpoint(run_dir: Path, processes: int = 1) -> Path | None:
    for checkpoint in checkpoints(run_dir):
        reason = incomplete_reason(checkpoint, processes)
        if reason is None:
            return checkpoint
        print(f"ft: warning: skipping incomplete checkpoint {checkpoint} ({reason})", flush=True)
    return None


def config_differences(saved_yaml: str, new_yaml: str) -> list[str]:
    """'key: old -> new' for every compared key that differs between two resolved configs."""
    import yaml

    old, new = flatten(yaml.safe_load(saved_yaml) or {}), flatten(yaml.safe_load(new_yaml) or {})
    keys = sorted((set(old) | set(new)) - set(NOT_COMPARED))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys if old.get(k) != new.get(k)]


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a.b.c": value} of a nested config."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def plan(run_dir: Path, config_yaml: str, resume: str, overwrite: bool, processes: int = 1) -> RunPlan:
    """Decide what to do with run_dir; writes nothing, raises FtError when it must not be touched. `processes`:
    how many will train (and each load its own RNG state from the checkpoint)."""
    path_checkpoint = None
    if resume not in ("auto", "never"):
        path_checkpoint = Path(resume).expanduser().resolve()
        reason = incomplete_reason(path_checkpoint, processes) if path_checkpoint.is_dir() else "no such directory"
        if reason:
            raise FtError(
                f"training.resume={resume} is not a complete checkpoint ({reason}): "
                f"name a checkpoint-<step> directory, or use training.resume=auto"
            )

    if not rundir.holds_files(run_dir):
        return RunPlan(checkpoint=str(path_checkpoint) if path_checkpoint else None)

    new_name = "set another training.run_name"
    if not (run_dir / rundir.CONFIG).is_file():
        raise FtError(
            f"run directory {run_dir} already exists and was not made by ft (no config.yaml): "
            f"{new_name} or move it away"
        )
    if overwrite:
        if path_checkpoint and run_dir.resolve() in path_checkpoint.parents:
            raise FtError(
                f"training.overwrite=true would delete training.resume={resume}: copy the checkpoint elsewhere first"
            )
        print(f"ft: training.overwrite=true: replacing the earlier run in {run_dir}", flush=True)
        return RunPlan(checkpoint=str(path_checkpoint) if path_checkpoint else None, replace=True)

    differences = config_differences((run_dir / rundir.CONFIG).read_text(), config_yaml)
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise FtError(
            f"run directory {run_dir} already exists with a different config ({shown}): "
            f"rerun with the same config to continue it, {new_name}, or add training.overwrite=true to replace it"
        )
    if (run_dir / rundir.TRAINER_STATE).is_file():
        raise FtError(
            f"run directory {run_dir} already exists and holds a finished run: "
            f"{new_name}, or add training.overwrite=true to train it again"
        )
    if resume == "never":
        raise FtError(
            f"run directory {run_dir} already exists with an unfinished run: continue it with "
            f"training.resume=auto, {new_name}, or add training.overwrite=true to start over"
        )
    if path_checkpoint:
        print(f"ft: resuming {run_dir} from {path_checkpoint}", flush=True)
        return RunPlan(checkpoint=str(path_checkpoint), existing=True)
    checkpoint = last_complete_checkpoint(run_dir, processes)
    if checkpoint is None:
        print(f"ft: {run_dir} has no complete checkpoint: starting this run again from step 0", flush=True)
        return RunPlan(existing=True)
    print(f"ft: resuming from {checkpoint} (training.resume=auto)", flush=True)
    return RunPlan(checkpoint=str(checkpoint), existing=True)


def resume_command(command: list[str] | None, run_dir: Path, cfg) -> str:
    """The command that continues this run; with no command known, how to form it."""
    import shlex

    extra = []
    if cfg.training.run_name is None:  # a timestamped name: only resumable when named explicitly
        extra.append(f"training.run_name={run_dir.name}")
    if command is None:
        return (
            "rerun the same command"
            + (f" with {' '.join(extra)}" if extra else "")
            + " (training.resume=auto is the default)"
        )
    return shlex.join(resume_arguments(command, run_dir, cfg))


def resume_arguments(command: list[str], run_dir: Path, cfg) -> list[str]:
    """The command that continues this run, as an argument list: `command` without training.overwrite= /
    training.resume=, naming the run dir where its name was a timestamp."""
    extra = [f"training.run_name={run_dir.name}"] if cfg.training.run_name is None else []
    kept = [arg for arg in command if not arg.lstrip("+~").startswith(("training.overwrite=", "training.resume="))]
    return [*kept, *extra]
