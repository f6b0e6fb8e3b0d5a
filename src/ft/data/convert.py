"""One source's rows converted from its format into TRL's form (ft.data's docstring shows the forms),
and its train / eval splits."""

import functools

from ft.config.schema import DataConfig
from ft.data import detect, preference, prompts, values
from ft.data.sources import load_raw
from ft.errors import FtError

ROLES = ("system", "user", "assistant")
IMAGE_COLUMNS = ("image", "images")  # where vision-language data (LLaVA, TRL's) keeps a row's images
IMAGE_PLACEHOLDER = "<image>"  # where LLaVA-style (ShareGPT) turns put an image
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "system": "system",
}


# The fields converters make, under other names while `map` writes them: a column that keeps its name keeps its
# input type, and "2" written into a column of numbers would be read back as 2
NEW = {name: f"{name}.ft" for name in ("messages", "tools", "prompt", "chosen", "rejected", "completion", "text")}


def _turns(row, column: str, role_key: str, content_key: str, extras=frozenset(), role_names=None) -> list[dict]:
    """A row's conversation as {role, content} turns, plus on every turn the `extras` the data has:
    "train" (it has per-turn training flags): whether the turn carries loss, from its own flag, else the row's,
    else whether it is the assistant's; "reasoning_content": an assistant turn's reasoning, or None;
    "tool_calls" (it has tool calls): an assistant turn's calls as JSON text or None, with a tool turn's "name"
    and "tool_call_id"."""
    default = values.flag(row, "the row") if "train" in extras else None
    turns = []
    for index, turn in enumerate(values.turn_list(row[column], column)):
        where = f"{column} turn {index + 1}"
        role = values.text(values.field(turn, role_key, where), f"{where}'s '{role_key}'")
        if role_names is not None:
            if role not in role_names:
                raise FtError(
                    f"sharegpt turn has unknown 'from' value '{role}': expected one of {', '.join(role_names)}"
                )
            role = role_names[role]
        calls = turn.get("tool_calls") if role == "assistant" and "tool_calls" in extras else None
        content = turn.get(content_key)
        out = {
            "role": role,
            "content": "" if calls and content is None else values.content(content, f"{where}'s '{content_key}'"),
        }
        if role_names is not None and IMAGE_PLACEHOLDER in out["content"]:  # ShareGPT turns: LLaVA's form
            raise FtError(
                f"{where} has an {IMAGE_PLACEHOLDER} placeholder (LLaVA-style data): {values.TEXT_ONLY}, and the "
                f"model would learn it as text: drop the placeholders (and the images) to train on the text"
            )
        if "train" in extras:
            own = values.flag(turn, where)
            if own and role != "assistant":
                raise FtError(
                    f"{where} is a {role} turn marked to train: only assistant turns carry loss "
                    f"(drop its train/weight flag)"
                )
            trained = own if own is not None else default if default is not None else True
            out["train"] = role == "assistant" and trained
        if "reasoning_content" in extras:
            key = next((key for key in REASONING if turn.get(key) is not None and role == "assistant"), None)
            out["reasoning_content"] = values.text(turn[key], f"{where}'s '{key}'") if key else None
        if "tool_calls" in extras:
            out["tool_calls"] = values.tool_calls(calls, where) if calls else None
            for key in ("name", "tool_call_id"):
                value = turn.get(key) if role == "tool" else None
                out[key] = None if value is None else values.text(value, f"{where}'s '{key}'")
        turns.append(out)
    if "train" in extras and any(t["role"] == "assistant" for t in turns) and not any(t["train"] for t in turns):
        raise FtError("every assistant turn is marked not to train (train: false / weight: 0): drop the row")
    return turns


def _from_messages(row, cfg, extras=frozenset()):
    out = {"messages": _turns(row, "messages", "role", "content", extras)}
    if "tool_calls" in extras:
        out["tools"] = values.tools(row.get("tools"))
    return out


def _from_alpaca(row, cfg):
    prompt = values.text(row["instruction"], "'instruction'")
    extra = "" if row.get("input") is None else values.text(row["input"], "'input'")
    prompt += f"\n\n{extra}" if extra else ""
    output = values.text(row["output"], "'output'")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]}


def _from_sharegpt(row, cfg, extras=frozenset()):
    return {"messages": _turns(row, "conversations", "from", "value", extras, SHAREGPT_ROLES)}


def _from_prompt_completion(row, cfg):
    prompt, completion = values.text(row["prompt"], "'prompt'"), values.text(row["completion"], "'completion'")
    return {"prompt": prompt, "completion": completion}


def _from_text(row, cfg):
    return {"text": values.text(row["text"], "'text'")}


CONVERTERS = {
    "messages": _from_messages,
    "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt,
    "prompt_completion": _from_prompt_completion,
    "text": _from_text,
    "preference": lambda row, cfg, **how: preference.from_preference(row, cfg.system_prompt, **how),
    "unpaired": lambda row, cfg, **how: preference.from_unpaired(row, cfg.system_prompt, **how),
    "prompts": lambda row, cfg, **how: prompts.from_prompts(row, cfg.system_prompt, **how),
}


TURNS = {"messages": "messages", "sharegpt": "conversations"}  # the formats whose turns may carry training flags
REASONING = ("reasoning_content", "thinking")  # where chat data keeps an assistant turn's reasoning


def _turns_may_have(dataset, fmt: str, keys) -> bool:
    """Whether turns of `fmt` may have one of `keys`, read from the turns' keys in the schema (any row's key is
    in it); turns of mixed types have no schema, so maybe."""
    if fmt not in TURNS:
        return False
    turn = getattr(dataset.features.get(TURNS[fmt]), "feature", None)
    return not isinstance(turn, dict) or any(key in turn for key in keys)


def has_turn_flags(dataset, fmt: str) -> bool:
    """Whether rows of `fmt` may carry per-turn training flags (ft.data.values.FLAGS), on turns or on the row."""
    row_flags = fmt in TURNS and any(key in dataset.column_names for key in values.FLAGS)
    return row_flags or _turns_may_have(dataset, fmt, values.FLAGS)


def turn_extras(dataset, cfg: DataConfig) -> frozenset:
    """The keys beyond role and content that this data's converted turns carry (ft.data.convert._turns)."""
    extras = {"train"} if has_turn_flags(dataset, cfg.format) else set()
    if cfg.format == "messages":
        if cfg.reasoning == "keep" and _turns_may_have(dataset, cfg.format, REASONING):
            extras.add("reasoning_content")
        if "tools" in dataset.column_names or _turns_may_have(dataset, cfg.format, ("tool_calls",)):
            extras.add("tool_calls")
    return frozenset(extras)


def turn_keys(dataset) -> set[str]:
    """The keys of the turns of converted conversations (role, content, and "train" where the data has flags)."""
    turn = getattr(dataset.features.get("messages"), "feature", None)
    return set(turn) if isinstance(turn, dict) else set()


def with_turn_flags(dataset):
    """Converted conversations whose turns all say whether they train, as those of data with flags do (a mixture's
    sources must have one schema)."""
    if "messages" not in dataset.column_names or "train" in turn_keys(dataset):
        return dataset
    return dataset.map(
        lambda row: {"messages": [{**m, "train": m["role"] == "assistant"} for m in row["messages"]]},
        desc="ft: adding training flags",
    )


TEXT_OR_TURNS = {"preference": preference.FIELDS, "unpaired": ("prompt", "completion"), "prompts": ("prompt",)}


def has_turns(dataset, fmt: str) -> bool:
    """Whether some row of `fmt` gives a field as turns where others may give text; then every row becomes
    conversational, as TRL needs one form per dataset. Read from the schema (a column of text is a Value, of turns
    a List), or where a column mixes kinds of values (datasets' Json), from the values."""
    from datasets import Json, Value

    for name in TEXT_OR_TURNS.get(fmt, ()):
        feature = dataset.features.get(name)
        if feature is None or isinstance(feature, Value):
            continue
        if not isinstance(feature, Json) or any(isinstance(value, list) for value in dataset[name]):
            return True
    return False


def is_conversational(fmt: str) -> bool:
    return fmt in ("messages", "alpaca", "sharegpt")


def _check_conversation(messages: list[dict], system_prompt: str | None) -> list[dict]:
    roles = [m["role"] for m in messages]
    allowed = (*ROLES, "tool") if messages and "tool_calls" in messages[0] else ROLES
    bad = [r for r in roles if r not in allowed]
    if bad:
        raise FtError(f"unknown role '{bad[0]}': messages roles must be one of {', '.join(allowed)}")
    for index, message in enumerate(messages):
        called = index and (messages[index - 1].get("tool_calls") or messages[index - 1]["role"] == "tool")
        if message["role"] == "tool" and not called:
            raise FtError(f"turn {index + 1} is a tool's result, but no tool call comes before it")
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
        system = {**dict.fromkeys(messages[0]), "role": "system", "content": system_prompt}
        system.update({"train": False} if "train" in system else {})
        messages = [system] + messages
    return messages


def check_no_images(dataset) -> None:
    """Data with an image / images column is refused before any row is converted, naming the first row with an
    image."""
    for column in IMAGE_COLUMNS:
        if column not in dataset.column_names:
            continue
        cells = dataset.data.column(column)  # Arrow's: read up to the first image, none decoded
        row = next((index for index, cell in enumerate(cells) if cell.as_py()), None)
        found = f"data row {row}: the '{column}' column holds an image"
        if row is None:
            found = f"the data has an '{column}' column"
        raise FtError(
            f"{found}: {values.TEXT_ONLY}: drop the '{column}' column (and any {IMAGE_PLACEHOLDER} placeholders) "
            f"to train on the text"
        )


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
    check_no_images(dataset)
    convert = CONVERTERS[cfg.format]
    extras = turn_extras(dataset, cfg)
    if extras:
        convert = functools.partial(convert, extras=extras)
    if has_turns(dataset, cfg.format):
        convert = functools.partial(convert, as_turns=True)
    conversational = is_conversational(cfg.format)

    def convert_row(row, index):
        try:
            out = convert(row, cfg)
            if conversational:
                out["messages"] = _check_conversation(out["messages"], cfg.system_prompt)
            return {NEW.get(name, name): value for name, value in out.items()}
        except FtError as e:
            raise FtError(f"data row {index}: {e}") from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:  # a shape no check foresaw
            raise FtError(f"data row {index}: malformed {cfg.format} row ({type(e).__name__}: {e})") from None

    converted = dataset.map(convert_row, with_indices=True, remove_columns=dataset.column_names, desc="ft: converting")
    return converted.rename_columns({new: name for name, new in NEW.items() if new in converted.column_names})


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
