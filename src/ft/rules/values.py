"""Each value against the `choices` and numeric bounds its schema field declares."""

import dataclasses

from ft.errors import FtError, did_you_mean
from ft.options import out_of_bounds


def check_values(node, prefix: str = "") -> None:
    """Every value against its field's `choices` and bounds in the schema."""
    for f in dataclasses.fields(node):
        key, value = f"{prefix}{f.name}", getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            check_values(value, f"{key}.")
            continue
        if isinstance(value, list) and value and all(dataclasses.is_dataclass(item) for item in value):
            for index, item in enumerate(value):  # data.sources
                check_values(item, f"{key}[{index}].")
            continue
        if value is None:
            continue
        allowed = f.metadata.get("choices")
        for item in value if isinstance(value, list) else [value]:
            if allowed is not None and item not in allowed:
                shown = f"{key}={item}" if not isinstance(value, list) else f"{key}: '{item}'"
                raise FtError(
                    f"{shown} is not valid: {did_you_mean(str(item), allowed)}choose one of {', '.join(allowed)}"
                )
        problem = out_of_bounds(f, value)
        if problem:
            raise FtError(f"{key} {problem}")
