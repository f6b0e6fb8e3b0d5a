"""A command's options, declared once: a dataclass whose fields carry type, default and a one-line help.

Every command takes its options the same way, as `key=value` arguments: the parser, the usage line and
the per-key `--help` are derived from the dataclass, so none of them can drift from the defaults the code
runs with. Commands that also compose a recipe (sbatch, data preview) take the recipe's overrides beside
their own keys; a bare key of the dataclass is the command's, anything else is the recipe's.
"""

import dataclasses
import typing

from ft.errors import FtError, did_you_mean

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
METAVARS = {int: "N", float: "X", bool: "true|false", str: "TEXT"}


# The numeric bounds option() takes: how each is written in messages, and the test it names
BOUNDS = {
    "ge": (">=", lambda v, b: v >= b),
    "gt": (">", lambda v, b: v > b),
    "le": ("<=", lambda v, b: v <= b),
    "lt": ("<", lambda v, b: v < b),
}


def option(
    default=dataclasses.MISSING,
    *,
    help: str,
    metavar: str | None = None,
    choices: list | None = None,
    ge=None,
    gt=None,
    le=None,
    lt=None,
):
    """A field with its one-line `help`; without a default it is required. A None default means unset:
    `help` says what that does. Config fields may also declare their allowed values (`choices`, also
    for each item of a list) or numeric bounds (ge/gt/le/lt), which ft.rules.values checks."""
    metadata = {"help": help, "metavar": metavar, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    metadata = {key: value for key, value in metadata.items() if value is not None}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING


def fields(cls) -> list[dataclasses.Field]:
    """The required fields first, then the others, each in declaration order."""
    return sorted(dataclasses.fields(cls), key=lambda field: not is_required(field))


def kind(cls, field: dataclasses.Field) -> type:
    """The field's type without `| None`."""
    hint = typing.get_type_hints(cls)[field.name]
    return next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)


def shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def metavar(cls, field: dataclasses.Field) -> str:
    return field.metadata.get("metavar") or METAVARS[kind(cls, field)]


def usage(cls) -> str:
    """E.g. `run_dir=DIR [max_new_tokens=128] [temperature=X]`: an optional key shows its default."""

    def word(field):
        if is_required(field):
            return f"{field.name}={metavar(cls, field)}"
        return f"[{field.name}={metavar(cls, field) if field.default is None else shown(field.default)}]"

    return " ".join(word(field) for field in fields(cls))


def explain(field: dataclasses.Field) -> str:
    """The field's help with `(required)` or its default."""
    text = field.metadata["help"]
    if "choices" in field.metadata:
        text += f"; one of {', '.join(map(shown, field.metadata['choices']))}"
    if is_required(field):
        return f"{text} (required)"
    if field.default is None:
        return text
    return f"{text} (default: {shown(field.default)})"


def describe(cls) -> str:
    """One line per key for a command's --help."""
    width = max(len(field.name) for field in fields(cls))
    return "arguments (key=value):\n" + "\n".join(f"  {field.name:<{width}}  {explain(field)}" for field in fields(cls))


def parse_pairs(cls, pairs: list[str], command: str):
    """An instance of `cls` from `key=value` arguments; a mistake is one FtError line."""
    by_name = {field.name: field for field in fields(cls)}
    keys = ", ".join(by_name)
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise FtError(f"{command}: expected key=value, got '{pair}'; valid keys: {keys}")
        if key not in by_name:
            raise FtError(f"{command}: unknown key '{key}': {did_you_mean(key, by_name)}valid keys: {keys}")
        values[key] = _convert(raw, kind(cls, by_name[key]), f"{command}: {key}={raw}")
        choices = by_name[key].metadata.get("choices")
        if choices and values[key] not in choices:
            listed = ", ".join(map(str, choices))
            raise FtError(f"{command}: {key}={raw} is not one of {listed}: {did_you_mean(raw, map(str, choices))}")
        problem = out_of_bounds(by_name[key], values[key])
        if problem:
            raise FtError(f"{command}: {key} {problem}")
    missing = [name for name, field in by_name.items() if is_required(field) and name not in values]
    if missing:
        raise FtError(f"{command}: {missing[0]}=... is required (valid keys: {keys})")
    return cls(**values)


def split_pairs(cls, arguments: list[str], command: str):
    """(the command's options, the other arguments): `key=value` pairs whose key is a field of `cls` fill
    it (see parse_pairs); the rest (recipe=NAME, GROUP=OPTION, a.b=VALUE, a file) are the recipe's."""
    names = {field.name for field in dataclasses.fields(cls)}
    own = [argument for argument in arguments if argument.partition("=")[0] in names]
    rest = [argument for argument in arguments if argument.partition("=")[0] not in names]
    return parse_pairs(cls, own, command), rest


def out_of_bounds(field: dataclasses.Field, value) -> str | None:
    """`must be >= 1, got 0` when `value` breaks a numeric bound its field declares; None when it keeps them."""
    for name, (symbol, holds) in BOUNDS.items():
        bound = field.metadata.get(name)
        if bound is not None and not holds(value, bound):
            return f"must be {symbol} {bound}, got {value}"
    return None


def _convert(raw: str, to: type, where: str):
    if to is bool:
        if raw.lower() not in BOOLEANS:
            raise FtError(f"{where} is not a valid bool: use true or false")
        return BOOLEANS[raw.lower()]
    try:
        return to(raw)
    except ValueError:
        raise FtError(f"{where} is not a valid {to.__name__}") from None
