"""`python -m ft preprocess [recipe=NAME] [key=value ...]`: the tokenized datasets of a training run
built into the preprocessing cache (ft.data.cache) ahead of it, e.g. once before a multi-node job whose
processes then all load them. It goes the way training goes, through SFTTrainer's own preparation,
so it loads the base model too (on this machine's CPU or GPU); it trains nothing and writes no run dir."""

import tempfile
from pathlib import Path

from ft import rules
from ft.config import registry
from ft.data import detect
from ft.errors import FtError


def preprocess(cfg) -> None:
    task = registry.get(cfg.task)
    if not task.cache:
        cached = [t.name for t in registry.tasks().values() if t.cache]
        raise FtError(
            f"ft preprocess caches the tokenized datasets of task={' / '.join(cached)}; task={cfg.task} tokenizes "
            f"inside its trainer at every run"
        )
    if not cfg.data.cache.enabled:
        raise FtError("data.cache.enabled=false: there is no cache to build; drop that override")
    rules.check_inputs(cfg)
    cfg = detect.resolved(cfg, announce=True)
    with tempfile.TemporaryDirectory(prefix="ft-preprocess-") as scratch:
        task.build_trainer(cfg, Path(scratch))
