"""Recipe files kept anywhere: `ft train path/to/recipe.yaml` or `recipe=path/to/recipe.yaml`.

A recipe file is written like a shipped recipe (recipes/*.yaml): keys of the config, and a `defaults:`
list that can extend a shipped recipe (`- default`) or pick group options (`- override /peft: qlora`).
Group options kept beside the file (e.g. `model/my_model.yaml` next to it) are selectable too:
the file's directory joins Hydra's search path. The file is checked here before Hydra sees it, so a
mistake is reported as one line naming the file and the line: YAML syntax, an unknown key, an
unknown defaults entry. Then it is stored in Hydra's ConfigStore as the recipe option `STORED_AS`.
"""

from pathlib import Path
from typing import Callable

from ft.errors import FtError, did_you_mean

SUFFIXES = (".yaml", ".yml")
STORED_AS = "_recipe_file"  # the recipe group option a recipe file is composed as


def is_path(value) -> bool:
    """Whether a recipe=VALUE names a file rather than a shipped recipe."""
    return isinstance(value, str) and (value.endswith(SUFFIXES) or "/" in value)


def expand(arguments: list[str]) -> list[str]:
    """`ft train FILE key=value ...`: a bare FILE argument becomes `recipe=FILE`."""
    expanded = []
    for argument in arguments:
        if "=" not in argument and argument.endswith(SUFFIXES):
            argument = f"recipe={argument}"
        elif "=" not in argument and not argument.startswith(("~", "+")):
            raise FtError(f"'{argument}' is neither key=value nor a recipe file (*.yaml)")
        expanded.append(argument)
    return expanded


def path_in(overrides: list[str]) -> Path | None:
    """The recipe file the overrides select (the last recipe= wins, as in Hydra), or None."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "recipe"]
    if not values or not is_path(values[-1]):
        return None
    path = Path(values[-1].strip("'\"")).expanduser()
    if not path.is_file():
        raise FtError(
            f"recipe file {values[-1]} not found (shipped recipes are named without .yaml: see python -m ft recipes)"
        )
    return path.resolve()


def load(path: Path, check_key: Callable[[str], None], options: Callable[[str], list[str]], groups) -> dict:
    """The file's contents as a dict, after checking its syntax, keys and defaults list.
    `check_key(dotted)` raises FtError for a key the schema lacks; `options(group)` lists a group's options."""
    import yaml

    text = path.read_text()
    try:
        root = yaml.compose(text)
        contents = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if context and mark and context.line != mark.line:  # e.g. an unclosed bracket: say where it opened
            problem += f" ({e.context} at line {context.line + 1})"
        raise FtError(f"{where}: invalid YAML: {problem}") from None
    if contents is None:
        return {}
    if not isinstance(contents, dict):
        raise FtError(f"{path}:1: a recipe is a mapping of keys (e.g. training:), not a {type(contents).__name__}")
    for key_node, value_node in root.value:
        if key_node.value == "defaults":
            _check_defaults(path, value_node, options, groups)
        else:
            _check_keys(path, key_node.value, value_node, check_key)
    return contents


def _check_keys(path: Path, dotted: str, node, check_key) -> None:
    import yaml

    line = node.start_mark.line + 1
    try:
        if isinstance(node, yaml.MappingNode) and node.value:
            for key_node, value_node in node.value:
                _check_keys(path, f"{dotted}.{key_node.value}", value_node, check_key)
        else:
            check_key(dotted)
    except FtError as e:
        if str(e).startswith(str(path)):  # raised deeper, already placed
            raise
        raise FtError(f"{path}:{line}: {e}") from None
    except TypeError:  # a key under a plain value: Hydra's type check reports it
        pass


def _check_defaults(path: Path, node, options, groups) -> None:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise FtError(f"{path}:{node.start_mark.line + 1}: defaults must be a list, e.g. [default, _self_]")
    for entry in node.value:
        line = entry.start_mark.line + 1
        if isinstance(entry, yaml.ScalarNode):  # `- NAME`: another recipe (relative to the recipe group)
            name = entry.value
            if name == "_self_":
                continue
            group, option = "recipe", name.removeprefix("/recipe/")
            shown = name
        elif isinstance(entry, yaml.MappingNode) and len(entry.value) == 1:
            key_node, value_node = entry.value[0]
            group = key_node.value.removeprefix("override ").removeprefix("optional ").strip().lstrip("/")
            option, shown = value_node.value, f"{key_node.value}: {value_node.value}"
            if group not in groups:
                raise FtError(
                    f"{path}:{line}: unknown defaults entry '{shown}': {did_you_mean(group, groups)}"
                    f"config groups: {', '.join(groups)}"
                )
            if not isinstance(option, str) or option == "null":
                continue
        else:
            raise FtError(f"{path}:{line}: a defaults entry is NAME or GROUP: OPTION, e.g. '- override /peft: qlora'")
        valid = options(group)
        if option not in valid:
            what = "recipe" if group == "recipe" else f"{group} option"
            raise FtError(
                f"{path}:{line}: unknown defaults entry '{shown}': no {what} '{option}': "
                f"{did_you_mean(option, valid)}valid: {', '.join(valid)}"
            )


def locate(message: str, error: BaseException | None, path: Path) -> str:
    """A report about a value set in the recipe file, placed at the file and line of its key: the key
    is the `full_key:` OmegaConf names in a wrapped `error`, or the KEY of a message "KEY=VALUE ..."."""
    import re

    keys = re.findall(r"^([\w.]+)=", message)
    while error is not None:
        keys += re.findall(r"full_key: (\S+)", str(error))
        error = error.__cause__
    line = line_of(path, keys[0]) if keys else None
    message = message.replace(f"In 'recipe/{STORED_AS}': ", "")
    return f"{path}:{line}: {message}" if line else message


def line_of(path: Path, dotted: str) -> int | None:
    """The line of a dotted key in the YAML file, or None when the file does not set it."""
    import yaml

    node = yaml.compose(path.read_text())
    for part in dotted.split("."):
        found = [v for k, v in node.value if k.value == part] if isinstance(node, yaml.MappingNode) else []
        if not found:
            return None
        node = found[0]
    return node.start_mark.line + 1
