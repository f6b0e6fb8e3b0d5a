"""`data.format=auto`: which format a source's rows are in, from its columns (after `data.columns`
renames them), among the formats the task trains on. The most specific fit wins (prompt/completion/label
is unpaired, not prompt_completion); columns that fit none, or several equally, are refused in one line.

Resolved once (`resolved`), before the run dir is written, so that the saved config (and everything that reads it
later: resume, eval, generate, the model card) names the concrete format."""

import dataclasses

from ft.config import registry
from ft.config.data_schema import KINDS
from ft.errors import FtError

# Fields each format reads: (required, optional). data.columns maps these names to source columns.
FIELDS = {
    "messages": (["messages"], []),
    "alpaca": (["instruction", "output"], ["input"]),
    "sharegpt": (["conversations"], []),
    "prompt_completion": (["prompt", "completion"], []),
    "text": (["text"], []),
    "preference": (["prompt", "chosen", "rejected"], []),
    "unpaired": (["prompt", "completion", "label"], []),
    "prompts": (["prompt"], []),
}
IMPLICIT_PROMPT = ["chosen", "rejected"]  # preference pairs whose shared prompt opens both answers (TRL's form)
# The dataset form each format becomes (TRL's names): sources of a mixture must all become the same one
FORMS = {"messages": "conversational", "alpaca": "conversational", "sharegpt": "conversational"}


def task_formats(task: str) -> list[str]:
    """The formats `task` trains on (ft.config.registry); synthetic data is generated in the first."""
    return list(registry.get(task).formats)


def form(fmt: str) -> str:
    return FORMS.get(fmt, fmt.replace("_", "-"))


def renamed(columns: list[str], mapping: dict) -> list[str]:
    """The source's column names as ft's field names (`mapping`: ft name -> source column)."""
    to_ft = {src: ft_name for ft_name, src in mapping.items()}
    return [to_ft.get(column, column) for column in columns]


def required(fmt: str, columns: list[str]) -> list[str]:
    """The fields rows of `fmt` need, given the columns they have (preference pairs may lack a prompt)."""
    return IMPLICIT_PROMPT if fmt == "preference" and "prompt" not in columns else FIELDS[fmt][0]


def fits(fmt: str, columns: list[str]) -> bool:
    return all(name in columns for name in required(fmt, columns))


def detect(columns: list[str], task: str, where: str = "data") -> str:
    """The one format of task's formats that `columns` fit best; `where` names the source in errors."""
    allowed = task_formats(task)
    fitting = [fmt for fmt in allowed if fits(fmt, columns)]
    best = [f for f in fitting if not any(set(FIELDS[f][0]) < set(FIELDS[g][0]) for g in fitting)]
    if len(best) == 1:
        return best[0]
    if best:
        choices = " or ".join(f"{where}.format={fmt}" for fmt in best)
        raise FtError(
            f"{where}.format=auto: the columns {columns} fit several formats ({', '.join(best)}): choose with {choices}"
        )
    elsewhere = [fmt for fmt in FIELDS if fmt not in allowed and fits(fmt, columns)]
    hint = f"; they look like {elsewhere[0]} data, which task={task} does not train on" if elsewhere else ""
    wanted = "; ".join(f"{fmt}: {'/'.join(FIELDS[fmt][0])}" for fmt in allowed)
    raise FtError(
        f"{where}.format=auto: the columns {columns} fit none of the formats task={task} trains on ({wanted}){hint}: "
        f"rename them with +{where}.columns.<field>=<column>, or set {where}.format=..."
    )


def source_config(cfg, entry):
    """The data config that reads one mixture entry (the settings it does not name are data.*'s)."""
    names = ("source", "format", "columns", "subset", "train_split", "eval_split")
    return dataclasses.replace(cfg, sources=[], **{name: getattr(entry, name) for name in names})


def source_format(data_cfg, task: str, where: str = "data") -> str:
    """The format of one source (a DataConfig, or a mixture entry made into one) with format=auto:
    synthetic data is generated in the task's format; other sources are read for their columns."""
    if data_cfg.source == "synthetic":
        return task_formats(task)[0]
    from ft.data import sources

    raw = sources.load_raw(data_cfg)
    split = raw[data_cfg.train_split] if data_cfg.train_split in raw else next(iter(raw.values()))
    return detect(renamed(split.column_names, data_cfg.columns), task, where)


def resolved(cfg, announce: bool = False):
    """The config with data.format (and each data.sources entry's format) made concrete and checked against
    the task (the same config when nothing is `auto`); `announce`: print one line saying what was chosen."""
    data = cfg.data
    if not task_formats(cfg.task):  # e.g. text_to_image's captioned images: no text format to choose
        return cfg
    if not data.sources:
        if data.format != "auto":
            return cfg
        fmt = source_format(data, cfg.task)
        _say(announce, f"data.format=auto: {fmt} ({_origin(data, cfg.task)})")
        return dataclasses.replace(cfg, data=dataclasses.replace(data, format=fmt))
    sources = []
    for index, entry in enumerate(data.sources):
        where = f"data.sources[{index}]"
        if entry.format == "auto":
            entry = dataclasses.replace(entry, format=source_format(source_config(data, entry), cfg.task, where))
            _say(announce, f"{where}.format=auto: {entry.format} ({_origin(entry, cfg.task)})")
        check_format(cfg.task, entry.format)
        sources.append(entry)
    forms = {form(entry.format) for entry in sources}
    if len(forms) > 1:
        shown = ", ".join(f"{entry.source}: {entry.format}" for entry in sources)
        raise FtError(
            f"data.sources become different dataset forms ({', '.join(sorted(forms))}; {shown}): a mixture must be "
            f"all conversational (messages / alpaca / sharegpt) or all of one other format"
        )
    fmt = data.format
    if fmt == "auto" or form(fmt) not in forms:
        fmt = sources[0].format  # what the mixture is: the form every source became
    return dataclasses.replace(cfg, data=dataclasses.replace(data, format=fmt, sources=sources))


def _origin(source, task: str) -> str:
    return f"synthetic data for task={task}" if source.source == "synthetic" else f"from the columns of {source.source}"


def _say(announce: bool, line: str) -> None:
    if announce:
        print(f"ft: {line}", flush=True)


def check_format(task_name: str, fmt: str) -> None:
    """The task trains on data of this format."""
    task = registry.get(task_name)
    if fmt in task.formats:
        return
    if not task.formats:
        raise FtError(f"task={task.name} reads no data.format (its data is not text rows): unset data.format")
    if len(task.formats) == 1 and task.formats[0] in KINDS:  # first what the task demands
        wanted = task.formats[0]
        trains_on, _, rows = KINDS[wanted]
        raise FtError(
            f"task={task.name} trains on {trains_on}, not data.format={fmt}: set data.format={wanted} ({rows}), "
            f"or start from recipe=tiny_{task.name}"
        )
    if fmt in KINDS:  # then whose format it was given
        readers = [t.name for t in registry.tasks().values() if fmt in t.formats]
        raise FtError(
            f"data.format={fmt} holds {KINDS[fmt][1]}, which task={task.name} cannot train on: "
            f"use task={' / '.join(readers)}, or a format for task={task.name}"
        )
    raise FtError(
        f"task={task.name} trains on data.format={' / '.join(task.formats)}, not data.format={fmt}: choose one of those"
    )
