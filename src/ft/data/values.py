"""The values of one row's fields, as the converters read them: text fields hold text, turns are objects with
a role and text content (a string, or typed parts of text), per-turn training flags are 0/1 or true/false. A
file gives whatever its writer put there (a CSV's numbers, JSON's true, null, nested objects); this is where
each becomes what the format documents, or a one-line refusal naming the field (ft.data.convert adds the row).
"""

import json

from ft.errors import FtError

FLAGS = ("train", "weight")  # a turn's (or a row's default) say on whether assistant turns carry loss
# why image data is refused by the text tasks, and where it trains instead
TEXT_ONLY = "ft's language-model tasks train on text only (images: task=vlm, e.g. recipe=tiny_vlm_llava)"


def _shown(value) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def text(value, where: str) -> str:
    """A text field's value (`where` names the field in errors, e.g. "'completion'"): a string as it is; a
    number or boolean as JSON writes it (2, 2.5, true)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if value is None:
        raise FtError(f'{where} is null: give it text ("" if it is meant to be empty)')
    kind = "a list" if isinstance(value, (list, tuple)) else "an object" if isinstance(value, dict) else "not text"
    raise FtError(f"{where} is {kind} ({_shown(value)}), not text")


def content(value, where: str) -> str:
    """A turn's content: text (as `text` reads it), or a list of typed parts of text, OpenAI's and transformers'
    form (`[{"type": "text", "text": ...}, ...]`), joined with nothing between them, as the chat templates of text
    models join them (Qwen3.5, GLM-4): so they train on the tokens of the same content given as one string.
    A part of another type (an image, audio) is refused."""
    if not isinstance(value, (list, tuple)):
        return text(value, where)
    texts = []
    for index, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(text(part.get("text"), f"{where} part {index + 1}'s 'text'"))
        elif isinstance(kind, str):
            raise FtError(
                f"{where} part {index + 1} is of type '{kind}', not text: {TEXT_ONLY}: drop the '{kind}' parts "
                f"from the data to train on its text"
            )
        else:
            raise FtError(f'{where} part {index + 1} is {_shown(part)}, not a typed part ({{"type": "text", ...}})')
    return "".join(texts)


def turn_list(value, name: str) -> list[dict]:
    """A list of turns, each a JSON object."""
    if not isinstance(value, (list, tuple)):
        raise FtError(f'\'{name}\' is {_shown(value)}, not a list of turns ({{"role": ..., "content": ...}})')
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise FtError(f"{name} turn {index + 1} is {_shown(turn)}, not an object with a role and content")
    return list(value)


def field(turn: dict, key: str, where: str):
    """`turn[key]`, required: a missing key names the turn (`where`)."""
    if turn.get(key) is None:
        raise FtError(f"{where} has no '{key}'")
    return turn[key]


def flag(holder: dict, where: str) -> bool | None:
    """The training flag `holder` (a turn, or a row) sets: `train: true|false` or `weight: 0|1`; None if it sets
    none. Weights other than 0 and 1 are refused: ft does not scale the loss per turn."""
    said = {}
    for key in FLAGS:
        value = holder.get(key)
        if value is None:
            continue
        if key == "train" and not isinstance(value, bool):
            raise FtError(f"{where} has train={_shown(value)}: it is true or false (does the turn carry loss)")
        if key == "weight" and (isinstance(value, bool) or value not in (0, 1)):
            raise FtError(
                f"{where} has weight={_shown(value)}: it is 0 (no loss on the turn) or 1; "
                f"ft does not scale the loss per turn"
            )
        said[key] = bool(value)
    if len(set(said.values())) > 1:
        raise FtError(f"{where} has train={said['train']} and weight={int(said['weight'])}, which disagree: keep one")
    return next(iter(said.values()), None)


def without_nulls(value):
    """`value` with every null-valued key of its objects left out, at any depth. A column of objects read by
    datasets (Arrow) has, in every row, the keys of all rows, null where a row had none: the arguments of one
    function get the other functions' parameters, as null."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [without_nulls(item) for item in value]
    return value


def tool_calls(value, where: str) -> str:
    """An assistant turn's tool calls as JSON text (a column of it keeps one type whatever the arguments): a list of
    OpenAI's {"type": "function", "function": {"name", "arguments"}} (or {"name", "arguments"}), the arguments an
    object or JSON text of one."""
    calls = []
    for index, call in enumerate(turn_list(value, f"{where}'s tool_calls")):
        function = call.get("function", call)
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise FtError(f"{where}'s tool call {index + 1} has no function name: give it function.name")
        arguments = without_nulls(function.get("arguments") or {})
        if isinstance(arguments, str):  # JSON text went through datasets untouched: its nulls are the writer's
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                raise FtError(f"{where}'s call of {name}: its arguments are not JSON ({_shown(arguments)})") from None
        if not isinstance(arguments, dict):
            raise FtError(f"{where}'s call of {name}: its arguments are {_shown(arguments)}, not an object")
        call_id = call.get("id")
        calls.append({"type": "function", "function": {"name": name, "arguments": arguments}, "id": call_id})
    return json.dumps(calls, ensure_ascii=False)


def tools(value) -> str | None:
    """A row's tool list (JSON schemas of the functions) as JSON text, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)  # nulls kept: JSON text went through datasets untouched
        except ValueError:
            raise FtError(
                f"'tools' is text that is not JSON ({_shown(value)}): give a list of function schemas"
            ) from None
    else:
        value = without_nulls(value)
    if not isinstance(value, (list, tuple)):
        raise FtError(f"'tools' is {_shown(value)}, not a list of function schemas")
    for index, schema in enumerate(value):
        function = schema.get("function", schema) if isinstance(schema, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise FtError(f"'tools' entry {index + 1} has no function name ({_shown(schema)})")
    return json.dumps(list(value), ensure_ascii=False)
