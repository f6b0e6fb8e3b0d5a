"""The config reference, generated from the schema: for `ft train --help` and the README's
"Config reference" section (tests/test_config.py fails when the README's copy is out of date)."""

import dataclasses
import itertools
import textwrap

from ft.config import CONF_DIR, field_type, registry
from ft.errors import FtError
from ft.options import BOUNDS

README = CONF_DIR.resolve().parent / "README.md"  # in a checkout: src/ft/conf links to the top-level conf/
REFERENCE_START, REFERENCE_END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


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


def reference_markdown() -> str:
    """The README's config reference: a table per section of the schema."""

    def code(text: str) -> str:
        return f"`{text}`" if text else ""

    def escaped(text: str) -> str:  # a bare | ends the table cell, and <word would start an HTML tag
        return text.replace("|", "\\|").replace("<", "\\<")

    lines = [
        "<!-- generated from src/ft/config/schema.py by ft.config.reference.write_reference(): edit the schema, not "
        "this -->"
    ]
    for section, rows in itertools.groupby(reference(), key=lambda row: row[0].split(".")[0]):
        lines += ["", f"**`{section}`**", "", "| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
        lines += [
            f"| `{key}` | {code(default)} | {code(allowed)} | {escaped(help_text)} |"
            for key, default, allowed, help_text in rows
        ]
    return "\n".join(lines)


def readme_with_reference(readme: str) -> str:
    """`readme` with the text between the config-reference markers replaced by reference_markdown()."""
    before, start, rest = readme.partition(REFERENCE_START)
    _, end, after = rest.partition(REFERENCE_END)
    if not (start and end):
        raise FtError(f"{README} needs the markers {REFERENCE_START} and {REFERENCE_END}")
    return f"{before}{start}\n{reference_markdown()}\n{end}{after}"


def write_reference() -> None:
    """Regenerate the config reference in README.md from the schema."""
    README.write_text(readme_with_reference(README.read_text()))


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
