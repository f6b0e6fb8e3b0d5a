"""`python -m ft preprocess [recipe=NAME] [key=value ...]`: the tokenized datasets of a training run
built into the preprocessing cache (ft.data.cache) ahead of it, e.g. once before a multi-node job whose
processes then all load them. It goes the way training goes, through SFTTrainer's own preparation,
so it loads the base model too (on this machine's CPU or GPU); it trains nothing and writes no run dir."""

import tempfile
from pathlib import Path

from ft import rules
from ft.data import detect
from ft.errors import FtError


def preprocess(cfg) -> None:
    if cfg.task != "sft":
        raise FtError(
            f"ft preprocess caches the tokenized datasets of task=sft; task={cfg.task} tokenizes inside its "
            f"trainer at every run"
        )
    if not cfg.data.cache.enabled:
        raise FtError("data.cache.enabled=false: there is no cache to build; drop that override")
    rules.check_inputs(cfg)
    detect.resolve(cfg)
    from ft.tasks import sft

    with tempfile.TemporaryDirectory(prefix="ft-preprocess-") as scratch:
        sft.build_trainer(cfg, Path(scratch))
