"""Rules on the task and what it trains on: each task reads its own data format, and a few settings
belong to one task only. On the config alone."""

from ft.config.schema import PREFERENCE_TASKS
from ft.errors import FtError


def check_task(cfg) -> None:
    task, fmt = cfg.task, cfg.data.format
    if task in PREFERENCE_TASKS and fmt != "preference":
        raise FtError(
            f"task={task} trains on preference pairs, not data.format={fmt}: set data.format=preference "
            f"(rows prompt/chosen/rejected), or start from recipe=tiny_{task}"
        )
    if task not in PREFERENCE_TASKS and fmt == "preference":
        raise FtError(
            f"data.format=preference holds pairs of answers, which task={task} cannot train on: "
            f"use task={PREFERENCE_TASKS[0]}, or a single-answer format (e.g. data.format=messages)"
        )
    if task != "sft" and (cfg.training.packing or cfg.training.padding_free):
        raise FtError(f"training.packing and training.padding_free are for task=sft only: unset them for task={task}")
    if cfg.model.adapter and cfg.peft.method == "none":
        raise FtError("model.adapter continues training an adapter, but peft.method=none trains the whole model")
