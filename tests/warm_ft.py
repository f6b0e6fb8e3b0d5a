"""`python -m ft` without paying the imports again: a Python that has imported the training stack once
forks a child for each call.

Importing torch, transformers, TRL, PEFT and datasets takes ~8 s of CPU: most of a 5-step training run
through the CLI. A forked child is still a process of its own: its pid, arguments, environment, working
directory, standard streams and exit code are the call's, and it exits through the interpreter's normal
teardown (atexit handlers run). What it cannot show is what happens on import: library noise, lazy imports,
environment variables a library reads when it is imported. conftest.run_ft only sends a call here when
asked (`warm=True`) and when its environment is the one this server imported under.

Protocol: one JSON request per line on the file descriptor named by argv[1], one JSON reply per line on
argv[2]. A request is {"args", "env", "cwd", "stdin", "stdout", "stderr", "unbuffered"} (file paths for the streams);
the reply is {"pid"} when the child starts, then {"code"} when it ends."""

import gc
import importlib
import io
import json
import os
import runpy
import sys
import threading

# What a training run imports anyway, and nothing that reads a test's environment at import time.
STACK = (
    "torch",
    "transformers.trainer",
    "datasets",
    "peft",
    "accelerate",
    "deepspeed",
    "trl.trainer.sft_trainer",
    "matplotlib.pyplot",
    "diffusers",
    "hydra",
    "ft.cli",
    "ft.training.launch",
)


def child(request: dict) -> None:
    """Become `python -m ft <args>` with the request's environment, directory and streams; never returns."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    opened = {}  # stdout and stderr may be one file, as with Popen(stderr=STDOUT): one descriptor for both
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        path = request[name]
        if path not in opened:
            opened[path] = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(opened[path], fd)
    for descriptor in opened.values():
        os.close(descriptor)
    if request["unbuffered"]:  # python -u
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    sys.argv = ["-m", *request["args"]]  # runpy puts the module's path in argv[0], as `python -m` does
    runpy.run_module("ft", run_name="__main__", alter_sys=True)  # raises SystemExit with the CLI's code
    sys.exit(0)


def serve(requests, replies) -> None:
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            child(request)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    for module in STACK:
        importlib.import_module(module)
    with open(int(sys.argv[1])) as requests, open(int(sys.argv[2]), "w") as replies:
        gc.freeze()  # a collection in a child would otherwise touch, and so copy, every page the imports filled
        assert threading.active_count() == 1, f"Python threads after the imports: {threading.enumerate()}"
        replies.write(json.dumps({"ready": os.getpid()}) + "\n")
        replies.flush()
        serve(requests, replies)
