"""Reading a source: synthetic tasks, a local JSONL/JSON/Parquet/CSV file or directory, or a hub dataset,
as a DatasetDict of its rows as they are (ft.data converts them)."""

import contextlib
import json
import logging
from pathlib import Path

from ft.data import synthetic
from ft.errors import FtError

LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_raw(cfg):
    """The source as a DatasetDict (local files and synthetic data come as a single 'train' split)."""
    from datasets import Dataset, DatasetDict, load_dataset

    if cfg.source == "synthetic":
        make = {
            "preference": synthetic.generate_preferences,
            "unpaired": synthetic.generate_unpaired,
            "prompts": synthetic.generate_prompts,
        }.get(cfg.format, synthetic.generate)
        rows = make(list(cfg.synthetic.tasks), cfg.synthetic.num_examples, cfg.synthetic.seed)
        return DatasetDict({"train": Dataset.from_list(rows)})
    path = Path(cfg.source).expanduser()
    if not path.exists():
        try:
            return load_dataset(cfg.source, cfg.subset)
        except Exception as e:  # offline, missing, private: datasets raises many kinds
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FtError(
                f"cannot load the hub dataset data.source={cfg.source}: {reason}: check the id, "
                f"or download it and point data.source to a local file"
            ) from None
    files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_BUILDERS) if path.is_dir() else [path]
    builders = {LOCAL_BUILDERS.get(p.suffix) for p in files}
    if not files or None in builders or len(builders) > 1:
        raise FtError(
            f"data.source={cfg.source}: need .jsonl/.json/.parquet/.csv files of a single kind, found "
            f"{[p.name for p in files][:5]}"
        )
    builder = builders.pop()
    options = _csv_as_text(files[0]) if builder == "csv" else {}
    try:
        with _quiet_loaders():  # their ERROR log would precede ft's one-line error
            raw = load_dataset(builder, data_files=[str(p) for p in files], **options)
    except Exception as e:
        if builder == "json":
            locate_bad_json(files)
        reason = (str(e.__cause__ or e).splitlines() or [type(e).__name__])[0]
        raise FtError(f"cannot read data.source={cfg.source}: {reason}") from None
    if all(len(split) == 0 for split in raw.values()):
        raise FtError(f"data.source={cfg.source} has no rows: point it to a file with training examples")
    return raw


def _csv_as_text(path: Path) -> dict:
    """load_dataset's options that read every column of a CSV as the text written there (a CSV has no types:
    `007` stays 007, `2` does not become the number 2) and an empty cell as ""."""
    import csv

    from datasets import Features, Value

    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except UnicodeDecodeError as e:
        raise FtError(f"{path}: not UTF-8 text (byte {e.start}): re-encode the file as UTF-8") from None
    except csv.Error as e:
        raise FtError(f"{path}: cannot read its header line ({e}): fix the file") from None
    return {"features": Features({name: Value("string") for name in header}), "keep_default_na": False}


@contextlib.contextmanager
def _quiet_loaders():
    loaders = logging.getLogger("datasets.packaged_modules")
    level = loaders.level
    loaders.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        loaders.setLevel(level)


class _TooBig(ValueError):
    pass


def _int64(digits: str) -> int:
    if not -(2**63) <= (value := int(digits)) < 2**63:
        raise _TooBig(digits if len(digits) <= 24 else digits[:21] + "...")
    return value


def locate_bad_json(files: list[Path]) -> None:
    """Raise an FtError naming the file and line of the first malformed record (datasets' own error
    names neither). Called only after datasets failed to read the files, so good files cost nothing."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise FtError(f"{path}: not UTF-8 text (byte {e.start}): re-encode the file as UTF-8") from None
        if path.suffix == ".json":
            try:
                json.loads(text)
            except ValueError as e:
                raise FtError(
                    f"{path} line {e.lineno}: invalid JSON ({e.msg}, column {e.colno}): fix the file"
                ) from None
            continue
        rows = 0
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, parse_int=_int64)
            except _TooBig as e:
                raise FtError(
                    f"{path} line {number}: the number {e} does not fit in 64 bits, which the JSON reader needs: "
                    f"write it as a string"
                ) from None
            except ValueError as e:
                raise FtError(
                    f"{path} line {number}: invalid JSON ({e.msg}, column {e.colno}): "
                    f"fix or remove that line (one JSON object per line)"
                ) from None
            if not isinstance(record, dict):
                raise FtError(
                    f"{path} line {number}: expected a JSON object, got {type(record).__name__}: "
                    f"write one {{...}} object per line"
                )
            rows += 1
        if rows == 0:
            raise FtError(f"{path} has no records: data.source needs at least one JSON object per line")
