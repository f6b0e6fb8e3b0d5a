"""Rules on the prepared trainer, before the first step: the tokenized lengths and the disk space."""

import math
import shutil
from pathlib import Path

from ft.errors import FtError


def lengths(prepared, num_examples: int, max_length: int, packing: bool) -> None:
    """After TRL tokenized the training set: error when no example fits training.max_length, a count
    and a warning when some do not. SFT truncates to max_length and drops the examples left with no
    trainable token; DPO drops those whose prompt alone fills it and truncates the rest per batch; the
    reward trainer drops pairs with an answer over it."""
    if packing or not max_length or not {"input_ids", "prompt_ids", "chosen_ids"} & set(prepared.column_names):
        return  # GRPO's prompts are tokenized per batch, as they are generated from
    import pyarrow.compute as pc

    kept = len(prepared)
    table = prepared.with_format("arrow")
    columns = prepared.column_names
    if "input_ids" in columns:  # SFT: already truncated, so a full row was cut
        at_limit = pc.sum(pc.equal(pc.list_value_length(table["input_ids"]), max_length)).as_py() if kept else 0
    elif "chosen_ids" in columns:  # pairs: the longer answer (with the prompt for DPO; reward: in the answers)
        longest = pc.max_element_wise(
            pc.list_value_length(table["chosen_ids"]), pc.list_value_length(table["rejected_ids"])
        )
        if "prompt_ids" in columns:
            longest = pc.add(pc.list_value_length(table["prompt_ids"]), longest)
        at_limit = pc.sum(pc.greater(longest, max_length)).as_py() if kept else 0
    elif "completion_ids" in columns:  # KTO: the prompt with its one answer
        total = pc.add(pc.list_value_length(table["prompt_ids"]), pc.list_value_length(table["completion_ids"]))
        at_limit = pc.sum(pc.greater(total, max_length)).as_py() if kept else 0
    else:  # ORPO / SimPO (TRL's experimental trainers) truncate when they tokenize, and drop nothing
        at_limit = 0
    dropped = num_examples - kept
    too_long = (at_limit or 0) + dropped
    if too_long >= num_examples:
        raise FtError(
            f"all {num_examples} training examples are longer than training.max_length={max_length} tokens"
            f"{f' ({dropped} left with nothing to learn)' if dropped else ''}: raise training.max_length"
        )
    if too_long:
        print(
            f"ft: warning: {too_long} of {num_examples} training examples are longer than training.max_length="
            f"{max_length} tokens ({at_limit} truncated, {dropped} dropped with nothing left to learn): "
            f"raise training.max_length to keep them whole",
            flush=True,
        )


def trained_share(prepared, packing: bool) -> None:
    """After TRL built the labels of assistant-only training on conversations: every example trains on
    some of its tokens (its assistant turns) and not on all of them (the user's turns are context). A
    0% or 100% example means the masks came out wrong, which the loss curve would never show."""
    if packing or "labels" not in prepared.column_names:
        return
    shares = [sum(label != -100 for label in labels) / max(len(labels), 1) for labels in prepared["labels"]]
    none, every = [i for i, s in enumerate(shares) if s == 0], [i for i, s in enumerate(shares) if s == 1]
    if none:
        raise FtError(
            f"{len(none)} of {len(shares)} training examples train on no token (the first: row {none[0]}): "
            f"the chat template marks no assistant tokens: give model.chat_template {{% generation %}} markers "
            f"around the assistant turns (`ft data preview` shows the masks)"
        )
    if every:
        raise FtError(
            f"{len(every)} of {len(shares)} training examples train on every token, user turns included (the "
            f"first: row {every[0]}): the chat template's {{% generation %}} markers cover the whole conversation: "
            f"put them around the assistant turns only in model.chat_template (`ft data preview` shows the masks)"
        )


def checkpoint_bytes(model) -> int:
    """About one checkpoint: the trainable weights plus Adam's two fp32 moments per trainable value."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return sum(p.numel() * (p.element_size() + 8) for p in trainable)


def disk_space(trainer, cfg, run_dir: Path, num_examples: int) -> None:
    """Before training: will the checkpoints the run keeps at once, plus the final weights, fit?"""
    t = cfg.training
    per_checkpoint = checkpoint_bytes(trainer.model)
    steps_per_epoch = math.ceil(num_examples / (t.per_device_train_batch_size * t.gradient_accumulation_steps))
    total_steps = t.max_steps if t.max_steps > 0 else math.ceil(steps_per_epoch * t.num_train_epochs)
    if t.save_strategy == "no":
        saves = 0
    elif t.save_strategy == "epoch":
        saves = math.ceil(total_steps / steps_per_epoch)
    else:
        every = t.save_steps if t.save_steps >= 1 else max(1, math.ceil(t.save_steps * total_steps))
        saves = math.ceil(total_steps / every)
    kept = saves if not t.save_total_limit else min(saves, t.save_total_limit + 1)  # +1: written before the oldest goes
    needed = kept * per_checkpoint + per_checkpoint // 3
    free = shutil.disk_usage(run_dir).free
    if needed > free:
        raise FtError(
            f"not enough disk space in {run_dir.parent}: the run needs about {_size(needed)} "
            f"({kept} checkpoints of {_size(per_checkpoint)} + the final weights), {_size(free)} free: "
            f"free some space, lower training.save_total_limit, or set training.output_dir elsewhere"
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
