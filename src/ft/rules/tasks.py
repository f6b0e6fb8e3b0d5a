"""Rules on the task and what it trains on: each task reads its own data format, and a few settings
belong to one task only. On the config alone."""

from ft.config.schema import PREFERENCE_TASKS, UNPAIRED_TASKS
from ft.errors import FtError

# The format a task demands: (its tasks, the format, what its rows hold)
DEMANDS = [
    (PREFERENCE_TASKS, "preference", "preference pairs (rows prompt/chosen/rejected)"),
    (UNPAIRED_TASKS, "unpaired", "single answers labelled good or bad (rows prompt/completion/label)"),
]


def check_task(cfg) -> None:
    task, fmt = cfg.task, cfg.data.format
    for tasks, needed, rows in DEMANDS:  # first what the task demands, then whose format it was given
        if task in tasks and fmt != needed:
            raise FtError(
                f"task={task} trains on {rows}, not data.format={fmt}: set data.format={needed}, "
                f"or start from recipe=tiny_{task}"
            )
    for tasks, needed, rows in DEMANDS:
        if task not in tasks and fmt == needed:
            raise FtError(
                f"data.format={needed} holds {rows}, which task={task} cannot train on: "
                f"use task={' / '.join(tasks)}, or a format for task={task}"
            )
    if task == "reward" and cfg.peft.method == "llama_adapter":
        raise FtError("peft.method=llama_adapter adapts a causal LM, not a reward model: use peft=lora for task=reward")
    if task == "kto" and cfg.training.per_device_train_batch_size < 2:
        raise FtError(
            "task=kto estimates its KL term from the other completions of a batch: set "
            "training.per_device_train_batch_size to 2 or more"
        )
    if task != "sft" and (cfg.training.packing or cfg.training.padding_free):
        raise FtError(f"training.packing and training.padding_free are for task=sft only: unset them for task={task}")
    if cfg.model.adapter and cfg.peft.method == "none":
        raise FtError("model.adapter continues training an adapter, but peft.method=none trains the whole model")
