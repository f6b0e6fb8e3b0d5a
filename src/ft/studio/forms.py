"""The Compose form, from the schema `ft train --help` is written from (ft.config.reference), and the check of
what the page sets: the same composition and rules as `ft train` (ft.config.compose), the command line that
trains it and the recipe file (`ft init`'s format) that holds it.

The page sends overrides as {key: value}: a string is taken as the text after `key=` on a command line (so
`[q_proj, v_proj]` is a list and `null` unsets), any other JSON value is written as JSON (which Hydra reads).
A string Hydra cannot parse as a value (spaces with `;`, quotes ...) is quoted, so it arrives verbatim."""

import dataclasses
import json
import re
import shlex
import threading
import typing
from pathlib import Path

from ft.errors import FtError

# Hydra's composition keeps global state: one composition at a time in the server
_compose_lock = threading.Lock()


def compose(arguments: list[str]):
    from ft import config

    with _compose_lock:
        return config.compose(arguments)


def recipes() -> list[dict]:
    """The shipped recipes: name, task, path, description."""
    from ft import config

    return [
        {"name": name, "task": recipe_task(name), "path": str(config.RECIPE_DIR / f"{name}.yaml"), "description": text}
        for name, text in config.recipe_descriptions().items()
    ]


def recipe_task(name: str, seen: tuple = ()) -> str:
    """The task a shipped recipe trains: its `task:` key, or that of the recipe it extends (default sft)."""
    import yaml

    from ft import config

    path = config.RECIPE_DIR / f"{name}.yaml"
    contents = yaml.safe_load(path.read_text()) if path.is_file() and name not in seen else None
    if not isinstance(contents, dict):
        return "sft"
    if "task" in contents:
        return str(contents["task"])
    extended = [entry for entry in contents.get("defaults") or [] if isinstance(entry, str) and entry != "_self_"]
    return recipe_task(extended[-1], (*seen, name)) if extended else "sft"


def _field_of(key: str) -> tuple[type, dataclasses.Field]:
    """(the dataclass holding `key`, its field)."""
    from ft.config import field_type, registry

    cls = registry.config_class()
    *sections, name = key.split(".")
    for part in sections:
        cls = field_type(next(f for f in dataclasses.fields(cls) if f.name == part))
    return cls, next(f for f in dataclasses.fields(cls) if f.name == name)


def _kind(cls, field: dataclasses.Field) -> tuple[str, bool]:
    """(the form's type for a field, whether it may be null)."""
    hint = typing.get_type_hints(cls)[field.name]
    args = typing.get_args(hint)
    nullable = type(None) in args or field.default is None
    inner = (
        next((arg for arg in args if arg is not type(None)), hint) if typing.get_origin(hint) is typing.Union else hint
    )
    if typing.get_origin(inner) in (list, dict) or inner in (list, dict):
        return "list", nullable
    if "choices" in field.metadata:
        return "choice", nullable
    return {bool: "bool", int: "int", float: "float"}.get(inner, "str"), nullable


def _bound(metadata, names) -> float | None:
    return next((metadata[name] for name in names if name in metadata), None)


def _json(value):
    return json.loads(json.dumps(value, default=str))


def value_at(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if node is None:
            return None
        node = getattr(node, part)
    return node


def form(recipe: str) -> dict:
    """Every key `ft train --help` lists (ft.config.reference, its source), grouped by section, with the
    recipe's value, the default, help, choices and bounds."""
    from ft.config import reference, registry

    arguments = [f"recipe={recipe}"]
    cfg = compose(arguments)
    owners = registry.section_owners()
    groups: dict[str, dict] = {}
    for key, _, _, help_text in reference.reference():
        cls, field = _field_of(key)
        kind, nullable = _kind(cls, field)
        section = key.rsplit(".", 1)[0] if "." in key else "general"
        top = key.split(".")[0]
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        in_use = top not in owners or getattr(cfg, top) is not None
        groups.setdefault(
            section, {"name": section, "task": owners[top].name if top in owners else None, "fields": []}
        )["fields"].append(
            {
                "key": key,
                "type": kind,
                "value": _json(value_at(cfg, key) if in_use else default),
                "default": _json(default),
                "help": help_text,
                "choices": field.metadata.get("choices"),
                "min": _bound(field.metadata, ("ge", "gt")),
                "max": _bound(field.metadata, ("le", "lt")),
                "nullable": nullable,
            }
        )
    return {"recipe": recipe, "task": cfg.task, "groups": list(groups.values())}


def argument(key: str, value) -> str:
    """`key=value` for the command line, the value arriving in the config as the page sent it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    text = value if isinstance(value, str) else json.dumps(value)
    try:
        OverridesParser.create().parse_overrides([f"{key}={text}"])
        return f"{key}={text}"
    except OverrideParseException:
        escaped = text.replace("\\", "\\\\").replace("'", "\\'")
        return f"{key}='{escaped}'"


def arguments(recipe: str, overrides: dict, runs_dir: Path | None = None) -> list[str]:
    """The `ft train` arguments after `train`: the recipe, then each override."""
    if not isinstance(overrides, dict):
        raise FtError("overrides must be an object {key: value}")
    listed = [f"recipe={recipe}", *(argument(str(key), value) for key, value in overrides.items())]
    if runs_dir is not None and "training.output_dir" not in overrides:
        listed.append(f"training.output_dir={runs_dir}")
    return listed


def error_key(message: str, keys: list[str]) -> str | None:
    """The config key a one-line error is about: an override it names, else the first schema key it names."""
    from ft.config import reference

    def position(key):
        found = re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message)
        return found.start() if found else None

    named = [key for key in sorted(keys, key=len, reverse=True) if position(key) is not None]
    if named:
        return named[0]
    schema = [(position(key), key) for key, *_ in reference.reference()]
    found = sorted((at, -len(key), key) for at, key in schema if at is not None)
    return found[0][2] if found else None


def check(recipe: str, overrides: dict, runs_dir: Path | None = None) -> dict:
    """What `ft train` would say about the config before anything loads, the command and the recipe file."""
    listed = arguments(recipe, overrides, runs_dir)
    command = ["python", "-m", "ft", "train", *listed]
    result = {"ok": True, "errors": {}, "error": None, "command": command, "command_line": shlex.join(command)}
    try:
        compose(listed)
        result["yaml"] = recipe_yaml(recipe, listed[1:])
    except FtError as error:
        message = str(error)
        key = error_key(message, [str(k) for k in overrides])
        result.update(ok=False, yaml=None)
        if key is not None:
            result["errors"][key] = message
        else:
            result["error"] = message
    return result


def recipe_yaml(recipe: str, overrides: list[str], name: str = "recipe.yaml") -> str:
    from ft.commands import init

    with _compose_lock:
        return init.render(recipe, name, overrides)


def save(recipe: str, overrides: dict, path: Path, overwrite: bool) -> Path:
    """Write the recipe file (ft init's format) to `path`; never over a file unless `overwrite`."""
    from ft.config import recipe_file

    if not path.name.endswith(recipe_file.SUFFIXES):
        raise FtError(f"{path.name}: a recipe file's name ends in .yaml, e.g. {path.name}.yaml")
    if path.exists() and not overwrite:
        raise FtError(f"{path} already exists: choose another path or overwrite it")
    listed = arguments(recipe, overrides)
    compose(listed)
    text = recipe_yaml(recipe, listed[1:], path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
