"""Datasets in, TRL's forms out.

A source (synthetic tasks, a local JSONL/JSON/Parquet/CSV file or directory, a hub dataset) is
read, its columns mapped to ft's field names (`data.columns`), and every row converted from its
format into one of TRL's dataset forms:

    conversational     {"messages": [{"role": ..., "content": ...}, ...]}   messages, alpaca, sharegpt
    prompt-completion  {"prompt": str, "completion": str}                 prompt_completion
    language modeling  {"text": str}                                      text
    preference         {"prompt", "chosen", "rejected"}: strings or turns    preference (ft.data.preference)
    unpaired           {"prompt", "completion", "label"}: label a bool       unpaired (ft.data.preference)
    prompts            {"prompt": str or turns, other columns kept}         prompts (ft.data.prompts)
"""

import dataclasses

from ft.config.schema import DataConfig
from ft.data import convert, detect
from ft.data.convert import is_conversational, to_trl_form  # noqa: F401 (ft.data's interface)
from ft.errors import FtError

FIELDS = detect.FIELDS


def load(cfg: DataConfig, task: str = "sft"):
    """(train, eval or None) datasets in TRL's form, for `task` (data.format=auto picks among its formats)."""
    if cfg.sources:
        from ft.data import mixture

        train, evaluation = mixture.load(cfg, task)
    else:
        if cfg.format == "auto":
            cfg = dataclasses.replace(cfg, format=detect.source_format(cfg, task))
        train, evaluation = convert.load_splits(cfg, carve=True)
    if cfg.max_examples is not None:
        train = train.select(range(min(cfg.max_examples, len(train))))
    if len(train) == 0:
        raise FtError(
            f"the training split of data.source={cfg.source} is empty (after the eval split and "
            f"data.max_examples): give it examples, raise data.max_examples or lower data.eval_size"
        )
    if evaluation is not None and len(evaluation) == 0:
        raise FtError(f"the eval split of data.source={cfg.source} is empty: give it examples, or set data.eval_size=0")
    return train, evaluation
