"""The runs directory as the page shows it: each run's task, recipe, status, progress and metrics, its curves
(the rows ft logs to log_history.jsonl while it trains; trainer_state.json for runs from before that file), and
config diffs between runs. A run is a directory with a config.yaml, or a queued launch (no directory yet)."""

import datetime
import json
import re
import time
from pathlib import Path

from ft.run import resume, rundir

# The Trainer's progress bar in the log, unlabelled (loading and conversion bars have a label): " 6%|▌ | 12/200
# [00:05<01:20,  2.3it/s]"; text_to_image's loop logs "ft: step 12/200 loss ..."
PROGRESS_BAR = re.compile(
    r"(?:^|[\r\n]) *\d+%\|[^|\r\n]*\| *(\d+)/(\d+) "
    r"\[(?:(\d+):)?(\d+):(\d+)<(?:(\d+):)?(\d+):(\d+), *[\d.?]+(?:it/s|s/it)\]"
)
STEP_LINE = re.compile(r"ft: step (\d+)/(\d+) ")
RECENT_S = 120  # a run not launched here counts as running while its files changed this recently


class NotFound(Exception):
    """No such run or file (answered 404)."""


def _saved_config(run_dir: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load((run_dir / rundir.CONFIG).read_text()) or {}
    except (OSError, ValueError):
        return {}


def points(run_dir: Path) -> list[dict]:
    """The run's logged rows, in step order: a finished run's trainer_state.json, else log_history.jsonl as it
    grows (a row per line), else the newest checkpoint's trainer_state.json. A resumed run's rows after the
    checkpoint it went back to are replaced by the resumed ones."""
    rows = []
    path = run_dir / rundir.LOG_HISTORY
    if path.is_file() and not (run_dir / rundir.TRAINER_STATE).is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the line being written
                continue
    else:
        states = [run_dir / rundir.TRAINER_STATE, *(c / rundir.TRAINER_STATE for c in resume.checkpoints(run_dir))]
        state = next((s for s in states if s.is_file()), None)
        rows = json.loads(state.read_text()).get("log_history", []) if state else []
    kept = []
    for row in rows:
        if not isinstance(row.get("step"), (int, float)):
            continue
        while kept and kept[-1]["step"] > row["step"]:
            kept.pop()
        kept.append({key: value for key, value in row.items() if isinstance(value, (int, float))})
    return kept


def _progress(log_text: str, max_steps: int) -> tuple[int | None, int | None, float | None]:
    """(step, steps, ETA in seconds) from the last progress line of the training log."""
    bars = list(PROGRESS_BAR.finditer(log_text))  # training's, and evaluation's (fewer batches)
    steps = max_steps if max_steps > 0 else max((int(bar.group(2)) for bar in bars), default=0)
    found = next((bar for bar in reversed(bars) if int(bar.group(2)) == steps), None)
    if found:
        g = [int(x or 0) for x in found.groups()]
        return g[0], g[1], g[5] * 3600 + g[6] * 60 + g[7]
    steps = STEP_LINE.findall(log_text)
    if steps:
        step, total = map(int, steps[-1])
        return step, total, None
    return None, None, None


def _iso(seconds: float | None) -> str | None:
    return datetime.datetime.fromtimestamp(seconds).isoformat(timespec="seconds") if seconds else None


def summary(run_dir: Path, launcher) -> dict:
    """One row of the runs table."""
    job = launcher.job(run_dir.name)
    config = _saved_config(run_dir)
    training = config.get("training") or {}
    max_steps = int(training.get("max_steps", -1) or -1)
    rows = points(run_dir)
    losses = [row["loss"] for row in rows if "loss" in row]
    log_path = launcher.log_path(run_dir.name)
    log_text = log_path.read_text(errors="replace")[-200_000:] if log_path.is_file() else ""
    step, steps, eta = _progress(log_text, max_steps)
    if step is None and rows:
        step = int(rows[-1]["step"])
    status = _status(run_dir, job, launcher)
    if status == "finished":
        step, eta = steps or step, 0
    started = (job or {}).get("started") or _mtime(run_dir / rundir.CONFIG)
    ended = (job or {}).get("ended") if job else _last_change(run_dir)
    if status == "running":
        ended = time.time()
    recipe = config.get("recipe") or (_recipe_argument(job) if job else None)
    return {
        "name": run_dir.name,
        "run_dir": str(run_dir),
        "task": config.get("task") or _task_of(recipe),
        "recipe": Path(str(recipe)).stem if recipe and "/" in str(recipe) else recipe,
        "status": status,
        "step": step,
        "max_steps": steps or (max_steps if max_steps > 0 else None),
        "eta_s": eta if status in ("running", "finished") else None,
        "start_loss": losses[0] if losses else None,
        "end_loss": losses[-1] if losses else None,
        "started": _iso(started),
        "elapsed_s": round(ended - started, 1) if started and ended else None,
    }


def _recipe_argument(job: dict) -> str | None:
    return next((a.split("=", 1)[1] for a in job["command"] if a.startswith("recipe=")), None)


def _task_of(recipe) -> str | None:
    from ft.config import recipe_file
    from ft.studio import forms

    return forms.recipe_task(recipe) if recipe and not recipe_file.is_path(recipe) else None


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def _last_change(run_dir: Path) -> float | None:
    times = [p.stat().st_mtime for p in run_dir.iterdir()] if run_dir.is_dir() else []
    return max(times, default=None)


def _status(run_dir: Path, job: dict | None, launcher) -> str:
    """queued / running / finished / stopped (resumable: a checkpoint, no final weights) / failed."""
    if job is not None:
        state = launcher.status(job)
        if state != "ended":
            return state
    if (run_dir / rundir.TRAINER_STATE).is_file():
        return "finished"
    if job is None:  # launched elsewhere (the CLI): running while its files change
        if (_last_change(run_dir) or 0) > time.time() - RECENT_S:
            return "running"
        return "stopped" if resume.checkpoints(run_dir) else "failed"
    if job.get("returncode") not in (0, None):
        return "failed"
    return "stopped" if resume.checkpoints(run_dir) else "failed"


def table(runs_dir: Path, launcher) -> list[dict]:
    """Every run of runs_dir and the queue, newest first."""
    names = (
        {p.name for p in runs_dir.iterdir() if p.is_dir() and (p / rundir.CONFIG).is_file()}
        if runs_dir.is_dir()
        else set()
    )
    names |= {job["name"] for job in launcher.jobs()}
    rows = [summary(runs_dir / name, launcher) for name in names]
    return sorted(rows, key=lambda row: row["started"] or "9999", reverse=True)


def existing(run_dir: Path, launcher) -> Path:
    if not (run_dir / rundir.CONFIG).is_file() and launcher.job(run_dir.name) is None:
        raise NotFound(f"no run {run_dir.name} in {run_dir.parent}")
    return run_dir


def details(run_dir: Path, launcher) -> dict:
    existing(run_dir, launcher)
    job = launcher.job(run_dir.name)
    config = run_dir / rundir.CONFIG
    files = sorted(p.name for p in run_dir.iterdir() if p.is_file()) if run_dir.is_dir() else []
    return {
        **summary(run_dir, launcher),
        "config_yaml": config.read_text() if config.is_file() else None,
        "command": job["command"] if job else None,
        "files": files,
    }


def log(run_dir: Path, launcher, offset: int) -> dict:
    """The run's output from byte `offset` on."""
    existing(run_dir, launcher)
    path = launcher.log_path(run_dir.name)
    if not path.is_file():
        return {"text": "", "offset": 0}
    with path.open("rb") as f:
        f.seek(max(offset, 0))
        data = f.read()
    return {"text": data.decode("utf-8", errors="replace"), "offset": max(offset, 0) + len(data)}


def compare(run_dirs: list[Path], launcher) -> dict:
    """Each run's curves, and the config keys whose values differ between them (where to find a run and
    whether to resume it left out)."""
    for run_dir in run_dirs:
        existing(run_dir, launcher)
    configs = [resume.flatten(_saved_config(run_dir)) for run_dir in run_dirs]
    keys = sorted(set().union(*configs) - set(resume.NOT_COMPARED)) if configs else []
    diff = [
        {"key": key, "values": [c.get(key) for c in configs]}
        for key in keys
        if len({json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}) > 1
    ]
    return {"runs": [{"name": d.name, "points": points(d)} for d in run_dirs], "config_diff": diff}
