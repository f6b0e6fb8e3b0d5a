"""Compose a run's config from conf/ groups, a recipe and command-line overrides, and validate it.

Overrides are checked against the schema and the config groups *before* Hydra composes, so a typo
gives one line naming the valid choices instead of Hydra's multi-line report. Nothing here imports
torch.
"""

import dataclasses
import re
import typing
from pathlib import Path

from ft.config import recipe_file, registry
from ft.config.saved import to_yaml  # noqa: F401 (ft.config's interface)
from ft.config.schema import FtConfig
from ft.errors import FtError, did_you_mean

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
RECIPE_DIR = CONF_DIR / "recipe"  # conf/recipe links to the top-level recipes/
GROUPS = ("model", "peft", "optim", "data", "training", "logging", "distributed", "recipe")


def group_options(group: str, roots: tuple[Path, ...] = ()) -> list[str]:
    """The option names of a config group (its YAML files, without extension), in conf/ and in `roots`
    (a recipe file's directory, whose own group options sit beside it)."""
    return sorted({p.stem for root in (CONF_DIR, *roots) for p in (root / group).glob("*.yaml")})


def recipe_descriptions() -> dict[str, str]:
    """Recipe name -> the first line of its header comment."""
    descriptions = {}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        comments = (line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))
        descriptions[path.stem] = next((c for c in comments if c and not c.startswith("@package")), "")
    return descriptions


def _schema_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def field_type(f: dataclasses.Field):
    """A field's type with Optional[...] taken off (a task's section is Optional[ItsConfig])."""
    if typing.get_origin(f.type) is typing.Union:
        return next(t for t in typing.get_args(f.type) if t is not type(None))
    return f.type


def _check_key(key: str) -> None:
    """Fail on a dotted key that is not in the schema (dict-valued fields accept any sub-key)."""
    node, walked = registry.config_class(), []
    for part in key.split("."):
        if node is dict:
            return
        fields = _schema_fields(node)
        if part not in fields:
            where = ".".join(walked) or "the top level"
            raise FtError(
                f"unknown key '{key}': {did_you_mean(part, fields)}valid keys in {where}: {', '.join(fields)}"
            )
        walked.append(part)
        node = typing.get_origin(field_type(fields[part])) or field_type(fields[part])
        if not (dataclasses.is_dataclass(node) or node is dict):
            node = None
    if node is not None and dataclasses.is_dataclass(node):
        raise FtError(
            f"'{key}' is a section, not a value: set one of its keys, e.g. {key}.{next(iter(_schema_fields(node)))}=..."
        )


def check_overrides(overrides: list[str]) -> None:
    recipe_path = recipe_file.path_in(overrides)
    roots = (recipe_path.parent,) if recipe_path else ()
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise FtError(
            f"cannot parse override: {str(e).splitlines()[0]} (syntax: key=value, e.g. training.max_steps=10)"
        ) from None
    for override in parsed:
        key = override.key_or_group
        if override.is_sweep_override():
            raise FtError(f"'{override.input_line}' lists several values: add -m to sweep over them")
        if key.startswith("hydra"):
            raise FtError(f"'{key}' is not settable: ft runs Hydra only to compose the config")
        if key in GROUPS:
            options = group_options(key, roots)
            value = override.value()
            if key == "recipe" and recipe_file.is_path(value):
                continue
            if not override.is_delete() and value not in options:
                what = "recipe" if key == "recipe" else f"{key} option"
                raise FtError(
                    f"unknown {what} '{value}': {did_you_mean(str(value), options)}valid: {', '.join(options)}"
                )
        else:
            _check_key(key)


def _one_line(error: BaseException) -> str:
    messages = []
    while error is not None:  # Hydra wraps the OmegaConf error that says what is wrong
        messages.append(str(error))
        error = error.__cause__
    lines = [line.strip() for m in messages for line in m.splitlines() if line.strip()]
    text = " ".join(line for line in lines if not line.startswith(("full_key", "object_type", "reference_type")))
    return re.sub(r"\s+", " ", text)


def compose(overrides: list[str]) -> FtConfig:
    """Compose and validate the run's config, as typed schema objects."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf, open_dict

    overrides = recipe_file.expand(overrides)
    _register_named_task(overrides)
    check_overrides(overrides)
    ConfigStore.instance().store(name="ft_schema", node=registry.config_class())
    recipe_path = recipe_file.path_in(overrides)
    if recipe_path:
        overrides = _use_recipe_file(recipe_path, overrides)
    # A task's section is None until something sets it; Hydra cannot set a key under None, a merge can
    sections = [o for o in overrides if o.split("=", 1)[0].split(".")[0] in registry.section_owners()]
    overrides = [o for o in overrides if o not in sections]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="ft"):
            cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(sections)) if sections else cfg
    except Exception as e:  # Hydra and OmegaConf report bad YAML / wrong types with many classes
        message = f"invalid config: {_one_line(e)}"
        raise FtError(recipe_file.locate(message, e, recipe_path) if recipe_path else message) from None
    recipe = str(recipe_path) if recipe_path else cfg.hydra.runtime.choices.get("recipe")
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.recipe = recipe
    cfg = OmegaConf.to_object(cfg)
    from ft import rules

    try:
        rules.check_config(cfg)
    except FtError as e:  # a bad value the recipe file set (not the command line): say where
        from_file = recipe_path and not any(str(e).startswith(o.split("=")[0] + "=") for o in overrides)
        raise FtError(recipe_file.locate(str(e), None, recipe_path) if from_file else str(e)) from None
    return cfg


def _use_recipe_file(path: Path, overrides: list[str]) -> list[str]:
    """Store the checked file as the recipe option recipe_file.STORED_AS and put its directory on
    Hydra's search path; returns the overrides that select it."""
    from hydra.core.config_store import ConfigStore

    roots = (path.parent,)
    contents = recipe_file.load(path, _check_key, lambda group: group_options(group, roots), GROUPS)
    ConfigStore.instance().store(group="recipe", name=recipe_file.STORED_AS, node=contents, package="_global_")
    kept = [o for o in overrides if o.split("=", 1)[0] != "recipe"]
    return [*kept, f"recipe={recipe_file.STORED_AS}", f"hydra.searchpath=['file://{path.parent}']"]


def _register_named_task(overrides: list[str]) -> None:
    """A task of the user's own (task=my_pkg.my_module, on the command line or in a recipe file) registers
    its section before the schema is built."""
    path = recipe_file.path_in(overrides)
    named = [o.split("=", 1)[1] for o in overrides if o.startswith("task=")]
    if path is not None:  # its YAML errors are reported when it is loaded
        import yaml

        try:
            contents = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            contents = None
        if isinstance(contents, dict):
            named.append(str(contents.get("task", "")))
    for name in named:
        if "." in name:
            registry.get(name)
