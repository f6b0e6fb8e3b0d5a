"""Offline by default; the tiny model is built once into a cache shared by every test session."""

import atexit
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per worker: two workers' OpenMP threads spinning at each barrier on 2 cores made runs 10x slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FT_CACHE", str(Path(tempfile.gettempdir()) / "ft-test-cache"))
# The tokenized-data cache starts empty in every session: a test never reuses another session's entries.
if "FT_DATASETS_CACHE" not in os.environ:
    os.environ["FT_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="ft-test-datasets-")
    atexit.register(shutil.rmtree, os.environ["FT_DATASETS_CACHE"], ignore_errors=True)


# The environment every test starts from; the warm server (tests/warm_ft.py) imports under it.
BASE_ENV = dict(os.environ)


def environment() -> dict:
    """os.environ without what pytest sets itself for the running test."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def base_environment():
    """Each test starts from BASE_ENV: a run in this process sets variables for its loggers (WANDB_DIR,
    MLFLOW_TRACKING_URI, ...), which a later test's runs would otherwise inherit."""

    def restore():
        for key in environment().keys() - BASE_ENV.keys():
            del os.environ[key]
        os.environ.update(BASE_ENV)

    restore()
    yield
    restore()


class WarmFt:
    """tests/warm_ft.py, started once per session on first use."""

    def __init__(self, log: Path):
        requests_read, self.requests = os.pipe()
        self.replies, replies_write = os.pipe()
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("warm_ft.py")), str(requests_read), str(replies_write)],
                pass_fds=(requests_read, replies_write),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=BASE_ENV,
            )
        os.close(requests_read)
        os.close(replies_write)
        self.buffer, self.child = b"", None
        self.reply(timeout=300)  # {"ready": pid}: the stack is imported

    def reply(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.replies], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
            chunk = os.read(self.replies, 65536)
            assert chunk, f"the warm server died (exit {self.process.wait()})"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def start(self, args: list, cwd: Path | None, stdout: Path, stderr: Path, stdin: Path, unbuffered: bool):
        if self.child and self.child.poll() is None:  # left running by a failed test: one child at a time
            self.child.kill()
            self.child.wait()
        request = {"args": args, "env": BASE_ENV, "cwd": str(cwd or Path.cwd()), "unbuffered": unbuffered}
        request |= {"stdin": str(stdin), "stdout": str(stdout), "stderr": str(stderr)}
        os.write(self.requests, (json.dumps(request) + "\n").encode())
        self.child = WarmProcess(self, [sys.executable, "-m", "ft", *args], self.reply(timeout=60)["pid"])
        return self.child


class WarmProcess:
    """A child of the warm server, with the part of subprocess.Popen's interface the tests use."""

    def __init__(self, server: WarmFt, args: list, pid: int):
        self.server, self.args, self.pid, self.returncode = server, args, pid, None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.server.reply(timeout=3600 if timeout is None else timeout)["code"]
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@functools.cache
def warm_server() -> WarmFt:
    server = WarmFt(Path(tempfile.gettempdir()) / f"ft-warm-{os.getpid()}.log")
    atexit.register(os.close, server.requests)
    return server


def start_ft(*args: str, log: Path) -> WarmProcess:
    """`python -u -m ft <args>` in the background, stdout and stderr going to `log`, forked from the warm
    server (see run_ft), so in the environment it imported under."""
    assert environment() == BASE_ENV, "start_ft runs in the base environment: use subprocess.Popen for another"
    log.touch()
    return warm_server().start(list(args), None, log, log, Path(os.devnull), unbuffered=True)


def run_ft(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 600,
    env_extra: dict | None = None,
    env_drop: tuple = (),
    stdin: str | None = None,
    warm: bool = False,
) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, in this environment plus `env_extra` and without `env_drop`.
    `warm`: the call trains, and what it checks happens after the imports: fork it from tests/warm_ft.py,
    which has imported the training stack already (~8 s less), when the environment is the one it imported
    under."""
    env = {k: v for k, v in environment().items() if k not in env_drop} | (env_extra or {})
    if warm and env == BASE_ENV:
        with tempfile.TemporaryDirectory(prefix="ft-warm-") as tmp:
            streams = {name: Path(tmp) / name for name in ("stdin", "stdout", "stderr")}
            streams["stdin"].write_text(stdin or "")
            process = warm_server().start(list(args), cwd, **streams, unbuffered=False)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
            return subprocess.CompletedProcess(
                process.args, code, streams["stdout"].read_text(), streams["stderr"].read_text()
            )
    return subprocess.run(
        [sys.executable, "-m", "ft", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
        input=stdin,
    )


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_jsonl(path: Path, rows: list) -> Path:
    """One JSON object per line; a str row is written as it is (for malformed lines)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def assert_refused(code: int, stderr: str, *expected: str, alone: bool = True) -> str:
    """ft's contract for bad input: exit code 2, no traceback, and one `ft: error:` line, the last one,
    containing each `expected` text. `alone`: it is the only line on stderr (a refusal made before the
    heavy libraries are imported, whatever they would print); otherwise library output such as
    progress bars may come before it, but no other line mentions an error. Returns the error line."""
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    assert lines and lines[-1].startswith("ft: error: "), stderr[-3000:]
    if alone:
        assert len(lines) == 1, stderr[-3000:]
    assert [line for line in lines if re.search("error", line, re.IGNORECASE)] == lines[-1:], stderr[-3000:]
    for text in expected:
        assert text in lines[-1], lines[-1]
    return lines[-1]


def snapshot(root: Path) -> dict:
    """Every path under root with its size and mtime: equal snapshots mean nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from ft.config.schema import TinyModelConfig
    from ft.models import tiny

    return tiny.ensure(TinyModelConfig())


# A short, fast training run: a handful of steps, no TensorBoard, no intermediate checkpoints.
QUICK = [
    "training.max_steps=5",
    "training.eval_steps=5",
    "training.save_strategy=no",
    "logging=none",
    "data.synthetic.num_examples=200",
    "training.per_device_train_batch_size=16",  # the default recipe's 64 is for its 200-step run
]
# No evaluation at all (neither the untrained one nor during training).
NO_EVAL = ["training.eval_strategy=no", "data.eval_size=0", "training.eval_before_training=false"]


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The default recipe as `make train` runs it (the CLI, 200 steps: ~2 min on a quiet 2-core machine),
    trained once: tests/test_train.py checks its acceptance bar, and the GRPO, RLOO and distillation tests
    start from it (an SFT model that answers `sort`, so sampled answers differ in reward). Returns (its run
    directory, the finished process)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by pytest-xdist's workers: the first to get here trains, the others wait
    out, record = root / "default", root / "default-run.json"
    with FileLock(root / "default-run.lock"):
        if not record.exists():
            result = run_ft(
                "train", f"training.output_dir={out}", "training.run_name=default", "logging=none", timeout=1800
            )
            fields = dict(args=result.args, returncode=result.returncode, stdout=result.stdout, stderr=result.stderr)
            record.write_text(json.dumps(fields))
    result = subprocess.CompletedProcess(**json.loads(record.read_text()))
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "default", result


# --- runs trained once per session, for the tests that only read what they left ----------------------------

FINISHED_STEPS = 40


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """An SFT run trained in-process (tests read its trainer and model too): 40 steps, evaluated at the start
    and the end, checkpoints at steps 20 and 40. A stray .env file is planted in it: it must stay local."""
    from ft import config
    from ft.training import launch

    out = tmp_path_factory.mktemp("runs")
    overrides = [
        o for o in QUICK if not o.startswith(("training.max_steps", "training.eval_steps", "training.save_strategy"))
    ]
    cfg = config.compose(
        [
            *overrides,
            f"training.max_steps={FINISHED_STEPS}",
            f"training.eval_steps={FINISHED_STEPS}",
            "training.save_steps=20",
            f"training.output_dir={out}",
            "training.run_name=finished",
        ]
    )
    result = launch.train(cfg)
    (result.run_dir / ".env").write_text("WANDB_API_KEY=planted-env-file\n")
    return result


# Tokens in the environment of `cli_run`: none may reach its files or its output.
PLANTED_SECRETS = {
    "HF_TOKEN": "hf_PLANTEDsecretTOKEN0123456789",
    "HUGGING_FACE_HUB_TOKEN": "hf_PLANTEDsecretTOKEN0123456789",
    "WANDB_API_KEY": "PLANTEDwandbKEY0123456789abcdef0123456789",
}


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`python -m ft train` in a subprocess, run from its output directory with tokens planted in its
    environment: the quick run with the default logging (TensorBoard), a checkpoint at step 3 and
    training.max_length=30 (which some examples exceed). Returns (the output directory, the finished process)."""
    out = tmp_path_factory.mktemp("cli")
    overrides = [o for o in QUICK if o not in ("logging=none", "training.save_strategy=no")]
    result = run_ft(
        "train",
        *overrides,
        "training.save_steps=3",
        "training.max_length=30",
        f"training.output_dir={out}",
        "training.run_name=cli",
        env_extra=PLANTED_SECRETS,
        cwd=out,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result
