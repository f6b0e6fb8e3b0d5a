"""The data sections beyond a single source (part of the schema in ft.config.schema, split off to keep
each module small): a mixture of sources (`data.sources`) and the preprocessing cache (`data.cache`)."""

from dataclasses import dataclass
from typing import Dict, Optional

from ft.options import option

FORMATS = ["messages", "alpaca", "sharegpt", "prompt_completion", "text", "preference", "unpaired", "prompts"]
SFT_FORMATS = ["messages", "alpaca", "sharegpt", "prompt_completion", "text"]  # supervised: answers to imitate
# The formats that hold something other than answers to imitate: format -> (what a task trains on with it,
# what the format holds, its rows), for the one-line refusals of a task given the wrong kind of data
KINDS = {
    "preference": ("preference pairs", "pairs of answers", "rows prompt/chosen/rejected"),
    "unpaired": (
        "single answers labelled good or bad",
        "single answers labelled good or bad",
        "rows prompt/completion/label",
    ),
    "prompts": ("prompts it answers itself", "prompts without answers", "rows with a prompt"),
}


@dataclass
class DataSourceConfig:
    """One source of a mixture (README: Mixing datasets). Without `weight` and `num_examples` all of
    its training rows are used once."""

    source: str = option("synthetic", help='"synthetic" (data.synthetic), a hub id, or a local file / directory')
    format: str = option("auto", choices=["auto", *FORMATS], help="how its rows look; auto: from its columns")
    columns: Dict[str, str] = option({}, help="ft field name -> column in this source")
    subset: Optional[str] = option(None, help="hub dataset config name")
    train_split: str = option("train", help="split of the source to train on")
    eval_split: Optional[str] = option(None, help="a split of the source; null carves data.eval_size out of train")
    weight: Optional[float] = option(
        None, gt=0, help="its share of the weighted sources' rows (the weights are relative); null: see num_examples"
    )
    num_examples: Optional[int] = option(
        None, ge=1, help="exactly this many training rows from it (its rows repeat when it has fewer)"
    )
    eval_only: bool = option(False, help="evaluate on all of its rows, train on none (then the others give no eval)")


@dataclass
class DataCacheConfig:
    """The tokenized (and packed) datasets of task=sft, kept between runs (README: Preprocessing cache)."""

    enabled: bool = option(True, help="reuse a tokenized dataset built before with the same inputs")
    dir: Optional[str] = option(
        None, help="where they are kept; null: $FT_DATASETS_CACHE, else $FT_CACHE/datasets (~/.cache/ft/datasets)"
    )
