"""Export and push from the page: each is the CLI itself, `python -m ft export ...` or `python -m ft push ...`, in a
process of its own (an argument list, never a shell string), its output in a log file. The options and their
choices are the commands' own dataclasses (ExportOptions, PushOptions), so the page offers what the CLI takes.

A job lives beside the run's studio files, in <runs_dir>/.studio/jobs/: NAME.KIND-N.json (the command, pid, exit
code) and NAME.KIND-N.log (its output). Nothing goes inside the run dir but what the CLI itself writes there.
"""

import dataclasses
import json
import re
import subprocess
import threading
import time
from pathlib import Path

from ft.errors import FtError
from ft.studio import launcher

JOBS_DIR = "jobs"
TAIL_LINES = 12
EXPORTED = re.compile(r"^ft: exported to (.+)$", re.MULTILINE)  # what `ft export` prints when it is done


def _choices(options: type, key: str) -> list[str]:
    return list(next(f for f in dataclasses.fields(options) if f.name == key).metadata["choices"])


def export_formats(task_name: str) -> list[str]:
    """The `ft export` formats a run of the task can take: the task's own (Task.exports, e.g. kohya) and, for the
    text models, llama.cpp's and transformers' (gguf, gguf-adapter, merged)."""
    from ft.config import registry
    from ft.finish.export.command import TASK_FORMATS, ExportOptions

    task = registry.get(task_name)
    return [
        f
        for f in _choices(ExportOptions, "format")
        if (f in task.exports if f in TASK_FORMATS else task.head != "diffusion")
    ]


def export_arguments(run_dir: Path, body: dict) -> list[str]:
    """`ft export`'s arguments for the request; a format or quant the CLI does not take is refused here."""
    from ft.finish.export.command import ExportOptions

    arguments = [f"run_dir={run_dir}"]
    for key in ("format", "quant"):
        value = body.get(key)
        if value is None and key == "quant":
            continue
        if value not in _choices(ExportOptions, key):
            raise FtError(f"{key}={value} is not one of {', '.join(_choices(ExportOptions, key))}")
        arguments.append(f"{key}={value}")
    return ["export", *arguments]


def push_arguments(run_dir: Path, body: dict) -> list[str]:
    """`ft push`'s arguments for the request: PushOptions' keys the body sets, and --dry-run unless it says
    "dry_run": false (the CLI checks the repo id, and says in one line why it refuses one)."""
    from ft.finish.hub import PushOptions

    if not isinstance(body.get("repo_id"), str) or not body["repo_id"].strip():
        raise FtError("repo_id: name the Hub repo to push to (owner/name)")
    arguments = [f"run_dir={run_dir}"]
    for field in dataclasses.fields(PushOptions):
        value = body.get(field.name)
        if field.name != "run_dir" and value is not None:
            arguments.append(f"{field.name}={str(value).lower() if isinstance(value, bool) else value}")
    return ["push", *(["--dry-run"] if body.get("dry_run", True) else []), *arguments]


class Jobs:
    def __init__(self, state_dir: Path, project_dir: Path):
        self.dir, self.project_dir = Path(state_dir) / JOBS_DIR, Path(project_dir)
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen] = {}

    def _write(self, job: dict) -> None:
        launcher.write_json(self.dir / f"{job['id']}.json", job)

    def start(self, run: str, arguments: list[str]) -> dict:
        """Start `python -m ft ARGUMENTS` for run `run`; returns the job as `listed` shows it."""
        kind = arguments[0]
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            n = 1 + sum(1 for _ in self.dir.glob(f"{run}.{kind}-*.json"))
            job = {"id": f"{run}.{kind}-{n}", "run": run, "kind": kind, "command": ["python", "-m", "ft", *arguments]}
            with (self.dir / f"{job['id']}.log").open("wb") as log:
                child = launcher.start_ft(arguments, log, self.project_dir)  # not stopped by the server's Ctrl-C
            job.update(pid=child.pid, started=time.time(), returncode=None)
            self._children[job["id"]] = child
            self._write(job)
        threading.Thread(target=self._wait, args=(job, child), daemon=True).start()
        return self._shown(job)

    def _wait(self, job: dict, child: subprocess.Popen) -> None:
        job["returncode"] = child.wait()
        with self._lock:
            self._write(job)
            self._children.pop(job["id"], None)

    def listed(self, run: str) -> list[dict]:
        """The run's jobs, oldest first."""
        found = []
        for path in self.dir.glob(f"{run}.*.json") if self.dir.is_dir() else []:
            try:
                found.append(json.loads(path.read_text()))
            except ValueError:
                continue
        return [self._shown(job) for job in sorted(found, key=lambda j: j["started"])]

    def _shown(self, job: dict) -> dict:
        """running / finished / failed, the exit code, the last lines of the output and an export's directory."""
        log = self.dir / f"{job['id']}.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        code = job["returncode"]
        if code is None and job["id"] not in self._children and not launcher.pid_exists(job["pid"]):
            status = "failed"  # it ended while no server watched it: its exit code is lost
        else:
            status = "running" if code is None else ("finished" if code == 0 else "failed")
        exported = EXPORTED.findall(text) if status == "finished" and job["kind"] == "export" else []
        return {
            "id": job["id"],
            "kind": job["kind"],
            "command": job["command"],
            "status": status,
            "returncode": code,
            "tail": text.replace("\r", "\n").splitlines()[-TAIL_LINES:],
            "output": exported[-1] if exported else None,
        }
