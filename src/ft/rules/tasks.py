"""Rules on the task and what it trains on: each task reads its own data format, and a few settings
belong to one task only. On the config alone (a `module:function` reward is imported to check it)."""

from ft.config.schema import PREFERENCE_TASKS, PROMPT_TASKS, UNPAIRED_TASKS
from ft.errors import FtError
from ft.tasks import rewards

# Data formats that belong to one kind of task: format -> (its tasks, what they train on, what the
# format holds, its rows)
TASK_FORMATS = {
    "preference": (PREFERENCE_TASKS, "preference pairs", "pairs of answers", "rows prompt/chosen/rejected"),
    "unpaired": (
        UNPAIRED_TASKS,
        "single answers labelled good or bad",
        "single answers labelled good or bad",
        "rows prompt/completion/label",
    ),
    "prompts": (PROMPT_TASKS, "prompts it answers itself", "prompts without answers", "rows with a prompt"),
}


def check_task(cfg) -> None:
    if cfg.data.format != "auto":  # auto: checked once detected (ft.data.detect)
        check_format(cfg.task, cfg.data.format)
    _check_settings(cfg)


def check_format(task: str, fmt: str) -> None:
    """The task trains on data of this format."""
    for task_format, (tasks, trains_on, _, rows) in TASK_FORMATS.items():  # first what the task demands
        if task in tasks and fmt != task_format:
            raise FtError(
                f"task={task} trains on {trains_on}, not data.format={fmt}: set data.format={task_format} "
                f"({rows}), or start from recipe=tiny_{task}"
            )
    for task_format, (tasks, _, holds, _) in TASK_FORMATS.items():  # then whose format it was given
        if task not in tasks and fmt == task_format:
            raise FtError(
                f"data.format={fmt} holds {holds}, which task={task} cannot train on: "
                f"use task={' / '.join(tasks)}, or a format for task={task}"
            )


def _check_settings(cfg) -> None:
    task = cfg.task
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
    if task in PROMPT_TASKS:
        _check_grpo(cfg)


def _check_grpo(cfg) -> None:
    g, t = cfg.grpo, cfg.training
    if not g.rewards:
        raise FtError("grpo.rewards is empty: name at least one reward function, e.g. grpo.rewards=[exact_match]")
    for name in g.rewards:
        rewards.resolve(name)
    if g.reward_weights is not None and len(g.reward_weights) != len(g.rewards):
        raise FtError(
            f"grpo.reward_weights has {len(g.reward_weights)} weights for {len(g.rewards)} reward functions: "
            f"give one weight per function, or none"
        )
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps
    for name, size in (
        ("per_device_train_batch_size * gradient_accumulation_steps", batch),
        ("per_device_eval_batch_size", t.per_device_eval_batch_size),
    ):
        if size % g.num_generations:
            raise FtError(
                f"training.{name}={size} is not a multiple of grpo.num_generations={g.num_generations}: "
                f"each prompt's {g.num_generations} completions must be in the same batch"
            )
