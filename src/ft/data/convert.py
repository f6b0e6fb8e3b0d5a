"""One source's rows converted from its format into TRL's form (ft.data's docstring shows the forms),
and its train / eval splits."""

from ft.config.schema import DataConfig
from ft.data import detect, preference, prompts
from ft.data.sources import load_raw
from ft.errors import FtError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "system": "system",
}


def _from_messages(row, cfg):
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]}


def _from_alpaca(row, cfg):
    prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def _from_sharegpt(row, cfg):
    turns = []
    for turn in row["conversations"]:
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise FtError(
                f"sharegpt turn has unknown 'from' value '{turn['from']}': expected one of {', '.join(SHAREGPT_ROLES)}"
            )
        turns.append({"role": role, "content": turn["value"]})
    return {"messages": turns}


def _from_prompt_completion(row, cfg):
    return {"prompt": row["prompt"], "completion": row["completion"]}


def _from_text(row, cfg):
    return {"text": row["text"]}


CONVERTERS = {
    "messages": _from_messages,
    "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt,
    "prompt_completion": _from_prompt_completion,
    "text": _from_text,
    "preference": lambda row, cfg: preference.from_preference(row, cfg.system_prompt),
    "unpaired": lambda row, cfg: preference.from_unpaired(row, cfg.system_prompt),
    "prompts": lambda row, cfg: prompts.from_prompts(row, cfg.system_prompt),
}


def is_conversational(fmt: str) -> bool:
    return fmt in ("messages", "alpaca", "sharegpt")


def _check_conversation(messages: list[dict], system_prompt: str | None) -> list[dict]:
    roles = [m["role"] for m in messages]
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise FtError(f"unknown role '{bad[0]}': messages roles must be one of {', '.join(ROLES)}")
    if "assistant" not in roles:
        raise FtError("a conversation has no assistant turn, so nothing to learn: every row needs one")
    if "system" in roles[1:]:
        raise FtError(
            f"a system turn is only allowed first, found one at turn {roles.index('system', 1) + 1}: "
            f"move it to the start or fold it into a user turn"
        )
    first = next(r for r in roles if r != "system")
    if first != "user":
        raise FtError(
            f"a conversation must start with a user turn (after an optional system turn), not '{first}': "
            f"drop the leading {first} turn"
        )
    if system_prompt and roles[0] != "system":
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def to_trl_form(dataset, cfg: DataConfig):
    """Rename mapped columns, check the format's fields are present, convert every row."""
    mapping = {src: ft_name for ft_name, src in cfg.columns.items() if src != ft_name}
    missing_sources = [src for src in mapping if src not in dataset.column_names]
    if missing_sources:
        raise FtError(
            f"data.columns names columns {missing_sources} that the data lacks; its columns: {dataset.column_names}"
        )
    dataset = dataset.rename_columns(mapping)
    missing = [name for name in detect.required(cfg.format, dataset.column_names) if name not in dataset.column_names]
    if missing:
        raise FtError(
            f"data.format={cfg.format} needs column(s) {missing}; the data has {dataset.column_names}: "
            f"map them with data.columns, e.g. +data.columns.{missing[0]}=<column>"
        )
    convert = CONVERTERS[cfg.format]
    conversational = is_conversational(cfg.format)

    def convert_row(row, index):
        try:
            out = convert(row, cfg)
            if conversational:
                out["messages"] = _check_conversation(out["messages"], cfg.system_prompt)
            return out
        except FtError as e:
            raise FtError(f"data row {index}: {e}") from None
        except (KeyError, TypeError, AttributeError) as e:
            raise FtError(f"data row {index}: malformed {cfg.format} row ({type(e).__name__}: {e})") from None

    return dataset.map(convert_row, with_indices=True, remove_columns=dataset.column_names, desc="ft: converting")


def load_splits(cfg: DataConfig, carve: bool):
    """One source's (train, eval or None) in TRL's form: eval from its eval_split or, if `carve`,
    data.eval_size rows carved out of train."""
    raw = load_raw(cfg)
    if cfg.train_split not in raw:
        raise FtError(f"data.train_split={cfg.train_split} is not a split of {cfg.source}; splits: {list(raw)}")
    if cfg.eval_split is not None and cfg.eval_split not in raw:
        raise FtError(f"data.eval_split={cfg.eval_split} is not a split of {cfg.source}; splits: {list(raw)}")
    train = to_trl_form(raw[cfg.train_split], cfg)
    if cfg.eval_split is not None:
        return train, to_trl_form(raw[cfg.eval_split], cfg)
    if carve and cfg.eval_size > 0:
        size = int(cfg.eval_size) if cfg.eval_size >= 1 else cfg.eval_size
        if len(train) < 2 or (isinstance(size, int) and size >= len(train)):
            raise FtError(f"data.eval_size={size} leaves no training examples out of {len(train)}")
        split = train.train_test_split(test_size=size, seed=cfg.seed)
        return split["train"], split["test"]
    return train, None
