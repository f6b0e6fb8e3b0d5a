"""The config reference, generated from the schema: for `ft train --help` and the manual's config
reference page (docs/generate.py writes it at `make docs`)."""

import dataclasses
import textwrap

from ft.config import field_type, registry
from ft.options import BOUNDS


def _shown(value) -> str:
    """A value as it is written in YAML and on the command line."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list):
        return f"[{', '.join(map(_shown, value))}]"
    return str(value)


def _allowed(metadata) -> str:
    if "choices" in metadata:
        return ", ".join(metadata["choices"])
    return ", ".join(f"{symbol} {metadata[name]}" for name, (symbol, _) in BOUNDS.items() if name in metadata)


def reference(cls=None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config key of the schema, each task's section included: (dotted key, default, allowed values,
    help)."""
    rows = []
    for f in dataclasses.fields(cls or registry.config_class()):
        if dataclasses.is_dataclass(field_type(f)):
            rows += reference(field_type(f), f"{prefix}{f.name}.")
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            rows.append((f"{prefix}{f.name}", _shown(default), _allowed(f.metadata), f.metadata["help"]))
    return rows


def train_epilog(examples: str) -> str:
    """`ft train --help`'s epilog: the config groups with their options, then every key."""
    from ft import config

    groups = "\n".join(f"  {g:<12} {', '.join(config.group_options(g))}" for g in config.GROUPS)
    keys = "\n".join(
        textwrap.fill(
            f"{key}={default}  {f'({allowed})  ' if allowed else ''}{help_text}",
            width=100,
            initial_indent="  ",
            subsequent_indent="      ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        for key, default, allowed, help_text in reference()
    )
    return (
        f"config groups and their options (choose with GROUP=OPTION):\n{groups}\n\n"
        f"config keys (set with key=value; shown with their default, allowed values and meaning):\n{keys}\n\n"
        + examples
    )
