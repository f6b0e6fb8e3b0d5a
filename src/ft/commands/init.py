"""`python -m ft init [PATH] [recipe=NAME]`: a recipe file for the user to edit.

The file extends the shipped recipe it starts from (`defaults: [RECIPE, _self_]`) and spells out every
key that recipe sets, plus the keys most runs change (COMMON), each under a comment with its help text
and allowed values from the schema. It trains as written: `python -m ft train PATH`.
"""

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ft.config import check_overrides, compose, field_type, recipe_file, registry
from ft.config.reference import _allowed
from ft.errors import FtError
from ft.options import option

# The keys a new recipe is most likely to change, written even where they keep the default
COMMON = (
    "task",
    "model.name_or_path",
    "peft.method",
    "peft.r",
    "peft.lora_alpha",
    "data.source",
    "data.format",
    "training.max_steps",
    "training.num_train_epochs",
    "training.per_device_train_batch_size",
    "training.gradient_accumulation_steps",
    "training.learning_rate",
    "training.max_length",
    "training.output_dir",
)
SKIPPED = ("recipe",)  # recorded by ft, not set by a recipe


@dataclass(kw_only=True)
class InitOptions:
    recipe: str = option("default", help="the shipped recipe the file starts from", metavar="NAME")


def write(path: str, source: str) -> Path:
    """Write the recipe to `path` (never over an existing file); returns where."""
    target = Path(path).expanduser()
    if not target.name.endswith(recipe_file.SUFFIXES):
        raise FtError(f"{path}: a recipe file's name ends in .yaml, e.g. {target.name}.yaml")
    if target.exists():
        raise FtError(f"{path} already exists: choose another PATH or remove it")
    if recipe_file.is_path(source):
        raise FtError(f"recipe={source}: name a shipped recipe (python -m ft recipes); to start from a file, copy it")
    check_overrides([f"recipe={source}"])  # unknown: one line with the valid names
    text = render(source, target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def render(source: str, name: str = "recipe.yaml", overrides: list[str] = ()) -> str:
    """The recipe file's text: `source` (a shipped recipe, or a recipe file: then every key is spelled out,
    as a file cannot extend another file) with `overrides` (key=value) folded in."""
    from_file = recipe_file.is_path(source)
    cfg = compose([f"recipe={source}", *overrides])
    sections = {key: task.section() for key, task in registry.section_owners().items()}  # each at its defaults
    defaults = _flat(registry.config_class()(**sections), registry.config_class())
    chosen = _flat(cfg, registry.config_class())
    keys = [k for k in chosen if (from_file or chosen[k] != defaults.get(k) or k in COMMON) and k not in SKIPPED]
    from ft.config import recipe_descriptions

    started = f"the recipe file {source}" if from_file else f"the shipped recipe `{source}`"
    lines = [
        "# @package _global_",
        *textwrap.wrap(
            f"My recipe, started from {started}: {recipe_descriptions().get(source, '')}".rstrip(": "),
            width=100,
            initial_indent="# ",
            subsequent_indent="# ",
        ),
        f"# Train it with: python -m ft train {name} [key=value ...]  (the command line wins over the file)",
        "# Each key below is what the recipe sets, or one runs often change. Every other key keeps its default:",
        "# see `python -m ft train --help` or the README's Config reference. Group options (e.g. a model/NAME.yaml",
        "# beside this file) are chosen in `defaults:` with `- override /model: NAME`.",
        "defaults:",
        *([] if from_file else [f"  - {source}  # the recipe this one extends"]),
        "  - _self_  # this file's values win over it",
    ]
    open_sections: list[str] = []  # the sections the previous key sat in, outermost first
    for key in keys:
        *sections, name = key.split(".")
        shared = 0
        while shared < min(len(sections), len(open_sections)) and sections[shared] == open_sections[shared]:
            shared += 1
        if not sections or shared == 0:
            lines.append("")
        lines += ["  " * depth + f"{part}:" for depth, part in enumerate(sections[shared:], start=shared)]
        open_sections = sections
        indent = "  " * len(sections)
        lines += _comment(key, indent) + [f"{indent}{name}: {_yaml(chosen[key])}"]
    return "\n".join(lines) + "\n"


def _comment(key: str, indent: str) -> list[str]:
    field = _field(key)
    allowed = _allowed(field.metadata)
    text = field.metadata["help"] + (f" ({allowed})" if allowed else "")
    return textwrap.wrap(text, width=100, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ")


def _field(key: str) -> dataclasses.Field:
    cls = registry.config_class()
    for part in key.split("."):
        field = next(f for f in dataclasses.fields(cls) if f.name == part)
        cls = field_type(field)
    return field


def _flat(obj, cls, prefix: str = "") -> dict:
    """A schema object as {dotted key: value}, in the schema's order; a task's section only where it is set."""
    flat = {}
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(field_type(f)):
            if value is not None:
                flat.update(_flat(value, field_type(f), f"{prefix}{f.name}."))
        else:
            flat[f"{prefix}{f.name}"] = value
    return flat


def _yaml(value) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()
