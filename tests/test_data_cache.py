"""The preprocessing cache: a second build with the same inputs reuses the tokenized datasets (equal to
freshly tokenized ones), a change to any key rebuilds, and `ft preprocess` builds them ahead. Under DDP (one
rank tokenizes, the other loads) it is shown by tests/test_distributed.py's DDP equality run."""

import re

import pytest

from conftest import run_ft, write_jsonl
from ft import config
from ft.models import tiny
from ft.tasks.sft import build_trainer

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": str(2 * i)}]}
    for i in range(12)
]


def _compose(tmp_path, *extra):
    source = tmp_path / "data.jsonl"
    if not source.exists():
        write_jsonl(source, ROWS)
    return config.compose(
        [
            f"data.source={source}",
            "data.eval_size=2",
            f"data.cache.dir={tmp_path / 'cache'}",
            f"training.output_dir={tmp_path / 'runs'}",
            "logging=none",
            *extra,
        ]
    )


def _build(tmp_path, capsys, *extra, template=None):
    """(trainer, the cache key, whether it was reused)."""
    cfg = _compose(tmp_path, *extra)
    if template is not None:
        cfg.model.chat_template = template
    trainer = build_trainer(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    found = re.search(r"ft: data: (cached tokenized dataset (\w+) reused|tokenized dataset cached as (\w+))", out)
    assert found, out
    return trainer, found.group(2) or found.group(3), found.group(2) is not None


def _rows(dataset) -> list:
    return [(row["input_ids"], row["labels"]) for row in dataset]


def test_a_second_build_reuses_what_the_first_tokenized(tmp_path, capsys):
    first, key, reused = _build(tmp_path, capsys)
    assert not reused
    second, again, reused = _build(tmp_path, capsys)
    assert reused and again == key
    assert _rows(second.train_dataset) == _rows(first.train_dataset) and len(first.train_dataset) == 10
    assert _rows(second.eval_dataset) == _rows(first.eval_dataset) and len(first.eval_dataset) == 2
    fresh = build_trainer(_compose(tmp_path, "data.cache.enabled=false"), tmp_path / "run")
    assert _rows(fresh.train_dataset) == _rows(second.train_dataset)
    masked = [label for _, labels in _rows(second.train_dataset) for label in labels]
    assert 0 < masked.count(-100) < len(masked)  # the cached labels still mask all but the answers


def test_packed_rows_are_reused_as_packed(tmp_path, capsys):
    first, key, _ = _build(tmp_path, capsys, "training.packing=true", "training.max_length=64")
    second, again, reused = _build(tmp_path, capsys, "training.packing=true", "training.max_length=64")
    assert reused and again == key and len(first.train_dataset) < 10  # 10 examples packed into fewer rows
    assert [row["seq_lengths"] for row in second.train_dataset] == [row["seq_lengths"] for row in first.train_dataset]
    assert _rows(second.train_dataset) == _rows(first.train_dataset)


KEYS = {
    "tokenizer": ["model.tiny.vocab_size=960"],
    "max_length": ["training.max_length=24"],
    "masking": ["training.assistant_only_loss=false"],
    "packing": ["training.packing=true"],
    "seed_of_the_eval_split": ["data.seed=1"],
}


@pytest.mark.parametrize("changed", [*KEYS, "template", "data_file"])
def test_a_change_to_any_key_rebuilds(changed, tmp_path, capsys):
    _, key, _ = _build(tmp_path, capsys)
    if changed == "data_file":
        write_jsonl(tmp_path / "data.jsonl", ROWS[:-1] + [ROWS[0]])
    template = tiny.CHAT_TEMPLATE.replace("<|im_start|>", "<|im_start|> ") if changed == "template" else None
    _, other, reused = _build(tmp_path, capsys, *KEYS.get(changed, []), template=template)
    assert not reused and other != key
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([key, other])


@pytest.mark.slow
def test_preprocess_builds_it_ahead_and_train_reuses_it(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    overrides = _overrides(tmp_path)
    built = run_ft("preprocess", *overrides, warm=True)
    assert built.returncode == 0, built.stderr[-3000:]
    key = re.search(r"tokenized dataset cached as (\w+)", built.stdout).group(1)
    assert not (tmp_path / "runs").exists()  # nothing trained, no run dir
    trained = run_ft(
        "train", *overrides, "training.max_steps=1", "training.eval_strategy=no", "training.save_strategy=no", warm=True
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"ft: data: cached tokenized dataset {key} reused" in trained.stdout
    assert "Tokenizing" not in trained.stderr


def _overrides(tmp_path) -> list[str]:
    return [
        f"data.source={tmp_path / 'data.jsonl'}",
        "data.eval_size=2",
        f"data.cache.dir={tmp_path / 'cache'}",
        f"training.output_dir={tmp_path / 'runs'}",
        "logging=none",
    ]


def test_preprocess_refuses_a_task_without_the_cache(capsys):
    from conftest import assert_refused
    from ft import cli

    code = cli.main(["preprocess", "recipe=tiny_dpo"])
    assert_refused(code, capsys.readouterr().err, "ft preprocess caches the tokenized datasets of task=sft")


def test_an_unwritable_cache_dir_is_one_line(tmp_path, capsys):
    from conftest import assert_refused
    from ft import cli

    write_jsonl(tmp_path / "data.jsonl", ROWS)
    (tmp_path / "a_file").write_text("not a directory")  # (permissions would not stop root)
    overrides = [*_overrides(tmp_path), f"data.cache.dir={tmp_path / 'a_file' / 'cache'}"]
    code = cli.main(["train", *overrides, "training.max_steps=1"])
    assert_refused(code, capsys.readouterr().err, "cannot write the preprocessing cache", alone=False)
    assert not list((tmp_path / "runs").glob("*"))  # the run dir made for it is removed again


def test_a_run_storing_the_entry_another_run_just_stored_keeps_theirs(tmp_path, monkeypatch):
    """Two runs of the same data tokenize at once (a sweep, test workers): the one renaming its copy second
    finds the entry there again and keeps it, rather than failing the run with a cache error."""
    import shutil

    from datasets import Dataset

    from ft.data import cache

    entry, remove = tmp_path / "entry", shutil.rmtree

    def the_other_run_renames_between(path, *args, **kwargs):  # at our removal of the entry's old copy
        remove(path, *args, **kwargs)
        if path == entry:
            (entry / "train").mkdir(parents=True)

    monkeypatch.setattr(cache.shutil, "rmtree", the_other_run_renames_between)
    cache._write(entry, {"train": Dataset.from_dict({"x": [1, 2]})})
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # ours, still named .tmp<pid>, removed
