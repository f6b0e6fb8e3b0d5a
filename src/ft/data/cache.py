"""The preprocessing cache (task=sft): the datasets SFTTrainer tokenized (and packed) are saved, keyed by
everything that changes them, and a later run with the same key hands them to the trainer with TRL's
`skip_prepare_dataset`, so nothing is tokenized again.

The key is a hash of: the rows themselves after conversion to TRL's form (so the data's content, format,
columns, splits and system prompt), the tokenizer (datasets' Hasher over the loaded tokenizer: its files'
vocabulary, merges, special tokens), the chat template, and the SFTConfig fields that shape the tokens
(max_length, packing, the loss masking ...), plus the TRL version that tokenized. Tokenizing is TRL's
own: ft only saves and reloads its result (datasets' save_to_disk / load_from_disk).

On a miss the converted rows are first written under the cache dir, so that TRL's own main-process-first
preparation tokenizes once and the other processes load its map cache files; the main process then
saves the tokenized datasets. Entries are written to a temporary name and renamed, so a reader never
sees half of one."""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

# SFTConfig fields that change the tokenized datasets (TRL 1.16's SFTTrainer._prepare_dataset)
ARGS = (
    "max_length",
    "packing",
    "packing_strategy",
    "eval_packing",
    "assistant_only_loss",
    "completion_only_loss",
    "dataset_text_field",
    "truncation_mode",
    "shuffle_dataset",
    "eos_token",
    "pad_token",
)
SPLITS = ("train", "eval")


def root(cfg) -> Path:
    """data.cache.dir, else $FT_DATASETS_CACHE, else $FT_CACHE/datasets (FT_CACHE: ~/.cache/ft)."""
    ft_cache = Path(os.environ.get("FT_CACHE", Path.home() / ".cache" / "ft"))
    return Path(cfg.data.cache.dir or os.environ.get("FT_DATASETS_CACHE") or ft_cache / "datasets").expanduser()


def content_hash(dataset) -> str:
    """sha256 of the dataset's rows (its Arrow record batches, in order)."""
    import pyarrow as pa

    digest = hashlib.sha256(str(dataset.features).encode())
    for table in dataset.with_format("arrow").iter(batch_size=10_000):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(sink.getvalue())
    return digest.hexdigest()


def components(cfg, args, tokenizer, train, evaluation) -> dict:
    """What the key hashes, readable (saved beside the entry as key.json)."""
    import trl
    from datasets.fingerprint import Hasher

    shuffled = {"seed": args.seed} if args.shuffle_dataset else {}
    return {
        "train": content_hash(train),
        "eval": content_hash(evaluation) if evaluation is not None else None,
        "format": cfg.data.format,
        "columns": dict(cfg.data.columns),
        "tokenizer": Hasher.hash(tokenizer),
        "chat_template": hashlib.sha256(str(tokenizer.chat_template).encode()).hexdigest(),
        **{name: getattr(args, name) for name in ARGS},
        **shuffled,
        "trl": trl.__version__,
    }


@dataclass
class Entry:
    """One key's place in the cache, and whether this run found it there."""

    path: Path
    key: str
    parts: dict
    hit: bool = False

    @property
    def source(self) -> Path:  # the converted rows TRL tokenizes on a miss
        return self.path.with_name(self.key + ".rows")


def lookup(cfg, args, tokenizer, train, evaluation, ranks) -> tuple:
    """(entry, train, eval): on a hit the tokenized datasets (and `args` told to skip TRL's preparation);
    on a miss the converted rows, file-backed so that TRL's preparation is shared by the processes."""
    from datasets import load_from_disk

    parts = components(cfg, args, tokenizer, train, evaluation)
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    entry = Entry(root(cfg) / key, key, parts)
    entry.hit = (entry.path / "key.json").is_file()
    if entry.hit:
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        args.assistant_only_loss = False  # already applied: the cached labels mask all but the answers
        if ranks.is_main_process:
            print(f"ft: data: cached tokenized dataset {key} reused ({entry.path})", flush=True)
        loaded = [
            load_from_disk(str(entry.path / split)) if (entry.path / split).is_dir() else None for split in SPLITS
        ]
        return entry, loaded[0], loaded[1]
    with ranks.main_process_first():
        if ranks.is_main_process:
            _write(entry.source, {"train": train, "eval": evaluation})
        loaded = [load_from_disk(str(entry.source / s)) if (entry.source / s).is_dir() else None for s in SPLITS]
    return entry, loaded[0], loaded[1]


def store(entry: Entry, train, evaluation, ranks) -> None:
    """After a miss: the main process saves what TRL prepared, under the entry's key."""
    if entry.hit or not ranks.is_main_process:
        return
    _write(entry.path, {"train": train, "eval": evaluation}, entry.parts)
    shutil.rmtree(entry.source, ignore_errors=True)  # the processes memory-map it: removing it is safe
    print(f"ft: data: tokenized dataset cached as {entry.key} ({entry.path})", flush=True)


def _write(path: Path, splits: dict, parts: dict | None = None) -> None:
    """The splits saved with datasets into a temporary dir renamed to `path` when complete."""
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(temporary, ignore_errors=True)
        for name, dataset in splits.items():
            if dataset is not None:
                dataset.save_to_disk(str(temporary / name))
        if parts is not None:
            (temporary / "key.json").write_text(json.dumps(parts, indent=1, sort_keys=True, default=str))
        shutil.rmtree(path, ignore_errors=True)
        temporary.rename(path)
    except OSError as e:
        shutil.rmtree(temporary, ignore_errors=True)
        if path.is_dir():  # another run stored this entry between the removal and the rename: it stays
            return
        raise FtError(
            f"cannot write the preprocessing cache in {path.parent} ({e.strerror or e}): set data.cache.dir to a "
            f"writable directory, or data.cache.enabled=false"
        ) from None
