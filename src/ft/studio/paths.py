"""Paths the page names (a recipe file, a recipe to save, a run's file) confined to the allowed roots: the
project directory (where `ft studio` was started) and the runs directory. Symlinks are resolved first, so
neither `..` nor a link leads outside."""

from pathlib import Path


class Refused(Exception):
    """A path outside the allowed roots (answered 403)."""


def confine(path: str | Path, roots: list[Path], base: Path | None = None) -> Path:
    """`path` (relative to `base`, default the first root) resolved, if it lies inside one of `roots`."""
    given = Path(str(path)).expanduser()
    resolved = (given if given.is_absolute() else (base or roots[0]) / given).resolve()
    for root in roots:
        if resolved == root.resolve() or resolved.is_relative_to(root.resolve()):
            return resolved
    raise Refused(f"{path} is outside the project and runs directories: only paths inside them are allowed")


def run_dir(name: str, runs_dir: Path) -> Path:
    """The run directory `runs_dir/name`: a single name, no separators, inside runs_dir."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise Refused(f"'{name}' is not a run name: a run is a directory directly under {runs_dir}")
    return confine(runs_dir / name, [runs_dir])
