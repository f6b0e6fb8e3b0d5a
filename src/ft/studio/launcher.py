"""The runs the page launches: each is `python -m ft train ARGS` in a process of its own (an argument list, never a
shell string), in a new session so that it outlives the server, its output in a log file. One trains at a time;
the others wait in a queue and start when it exits.

What the server knows of a run it launched lives beside the run, in <runs_dir>/.studio/: NAME.json (the command,
the pid, queued / started / exit code) and NAME.log (the process's output). ft refuses a run dir holding files it
did not write, and a run launched here must be the CLI's, file for file: so nothing of the studio's goes inside
it. A restarted server reads .studio/ back: a live pid is a running run, a queued one is queued again.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ft.errors import FtError
from ft.studio import forms, paths

STATE_DIR = ".studio"
WATCH_S = 1.0  # how often the queue looks for runs that ended outside this server's sight


class Launcher:
    def __init__(self, runs_dir: Path, project_dir: Path):
        self.runs_dir, self.project_dir = Path(runs_dir), Path(project_dir)
        self.state_dir = self.runs_dir / STATE_DIR
        inside = self.runs_dir.is_relative_to(self.project_dir)
        self.output_dir = os.path.relpath(self.runs_dir, self.project_dir) if inside else str(self.runs_dir)
        self._lock = threading.RLock()
        self._children: dict[str, subprocess.Popen] = {}
        self._next()  # a restarted server picks up its queue
        threading.Thread(target=self._watch, daemon=True).start()

    # --- the state files
    def _state_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def job(self, name: str) -> dict | None:
        """What the studio recorded of run `name`, or None for a run it did not launch."""
        try:
            return json.loads(self._state_path(name).read_text())
        except (OSError, ValueError):
            return None

    def _write(self, job: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json(self._state_path(job["name"]), job)

    def jobs(self) -> list[dict]:
        found = [self.job(p.stem) for p in sorted(self.state_dir.glob("*.json"))] if self.state_dir.is_dir() else []
        return sorted((j for j in found if j), key=lambda j: j["queued"])

    # --- processes
    def alive(self, job: dict | None) -> bool:
        """Whether the job's process is still training (a pid reused by another program does not count)."""
        pid = (job or {}).get("pid")
        if not pid or job.get("returncode") is not None:
            return False
        child = self._children.get(job["name"])
        if child is not None:
            return child.poll() is None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return pid_exists(pid)  # no /proc (macOS): trust the pid
        state = stat.rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X") and b"ft" in command and b"train" in command

    def status(self, job: dict) -> str:
        """queued, running, or ended (runs.py tells finished / stopped / failed apart from the run dir)."""
        if job.get("pid") is None:
            return "queued"
        return "running" if self.alive(job) else "ended"

    def launch(self, recipe: str, overrides: dict) -> dict:
        """Queue `ft train` for the recipe and overrides (checked first, as ft train checks them); it starts
        now if nothing else is training."""
        if "training.output_dir" in overrides:
            raise FtError(f"training.output_dir: runs launched here go to {self.output_dir} (the studio's runs_dir)")
        arguments = forms.arguments(recipe, overrides, self.output_dir)
        cfg = forms.compose(arguments)
        with self._lock:
            name = cfg.training.run_name or self._new_name(Path(str(cfg.recipe)).stem)
            run_dir = paths.run_dir(name, self.runs_dir)
            if cfg.training.run_name is None:
                arguments.append(f"training.run_name={name}")
            elif (existing := self.job(name)) and (existing.get("pid") is None or self.alive(existing)):
                raise FtError(f"training.run_name={name}: that run is already queued or running")
            job = {"name": name, "command": ["python", "-m", "ft", "train", *arguments], "queued": time.time()}
            job.update(pid=None, started=None, ended=None, returncode=None, stop_requested=False)
            self._write(job)
            self.log_path(name).unlink(missing_ok=True)
        self._next()
        return {"id": name, "run_dir": str(run_dir), "status": self.status(self.job(name))}

    def _new_name(self, stem: str) -> str:
        """RECIPE-TIMESTAMP, as ft names a run, made unique among the runs and the queue."""
        base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        name, n = base, 1
        while (self.runs_dir / name).exists() or self._state_path(name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def _watch(self) -> None:
        """The runs a restarted server found are not its children, so no _wait sees them end: look every
        second, note when they ended, and start what is queued next."""
        while True:
            time.sleep(WATCH_S)
            with self._lock:
                for job in self.jobs():
                    ended = job.get("pid") and job.get("ended") is None and job["name"] not in self._children
                    if ended and not self.alive(job):
                        job["ended"] = time.time()
                        self._write(job)
            self._next()

    def _next(self) -> None:
        """Start the oldest queued job when nothing is training."""
        with self._lock:
            jobs = self.jobs()
            if any(self.alive(j) for j in jobs):
                return
            queued = [j for j in jobs if j.get("pid") is None]
            if queued:
                self._start(queued[0])

    def _start(self, job: dict) -> None:
        with self.log_path(job["name"]).open("ab") as log:
            child = start_ft(job["command"][3:], log, self.project_dir)  # the arguments after python -m ft
        self._children[job["name"]] = child
        job.update(pid=child.pid, started=time.time(), ended=None, returncode=None)
        self._write(job)
        threading.Thread(target=self._wait, args=(job["name"], child), daemon=True).start()

    def _wait(self, name: str, child: subprocess.Popen) -> None:
        code = child.wait()
        with self._lock:
            job = self.job(name)
            if job is not None and job.get("pid") == child.pid:
                job.update(returncode=code, ended=time.time())
                self._write(job)
            self._children.pop(name, None)
        self._next()

    def stop(self, run_dir: Path) -> str:
        """SIGTERM to the run's process group: ft finishes the step, saves a checkpoint and exits (as on the
        CLI). A queued run is taken off the queue."""
        with self._lock:
            job = self.job(run_dir.name)
            if job is None:
                raise FtError(f"{run_dir.name} was not launched from the studio: stop it where it runs (Ctrl-C)")
            if job.get("pid") is None:
                self._state_path(run_dir.name).unlink()
                return "stopped"
            if not self.alive(job):
                raise FtError(f"{run_dir.name} is not running")
            job["stop_requested"] = True
            self._write(job)
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        return "stopping"

    def resume(self, run_dir: Path) -> str:
        """Queue the run's resume command (ft.run.resume: its command without overwrite/resume keys)."""
        from ft.config import saved
        from ft.run import resume as resuming
        from ft.run import rundir

        with self._lock:
            job = self.job(run_dir.name)
            if job is None:
                raise FtError(f"{run_dir.name} was not launched from the studio: resume it with the command it printed")
            if self.status(job) != "ended":
                raise FtError(f"{run_dir.name} is {self.status(job)}: stop it first")
            if (run_dir / rundir.TRAINER_STATE).is_file():
                raise FtError(f"{run_dir.name} has finished: there is nothing to resume")
            if not (run_dir / rundir.CONFIG).is_file():
                raise FtError(f"{run_dir.name} stopped before it started: launch it again")
            cfg = saved.load(run_dir / rundir.CONFIG)
            job["command"] = resuming.resume_arguments(job["command"], run_dir, cfg)
            job.update(queued=time.time(), pid=None, started=None, ended=None, returncode=None, stop_requested=False)
            self._write(job)
        self._next()
        return self.status(self.job(run_dir.name))


def write_json(path: Path, data: dict) -> None:
    """`data` as JSON at `path`, through a temporary file renamed into place: a reader never sees half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1))
    temporary.replace(path)


def start_ft(arguments: list[str], output, cwd: Path) -> subprocess.Popen:
    """`python -m ft ARGUMENTS` with this interpreter, its output (stdout and stderr, unbuffered) to the open
    binary file `output`, in a session of its own: it outlives the server and is stopped as one process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "ft", *arguments],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (another user's included)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
