"""The task registry: every training task declares itself once, in its own module, as a `Task`.

A task is a module with a `TASK = Task(...)` at its top level: ft's own live in `ft.tasks` (one module
or package each), and any importable module can be one (`task=my_pkg.my_module`, or an entry point in
the `ft.tasks` group). What the rest of ft needs to know about a task (which data formats it trains on,
its config section, the model head it loads, how `ft eval` scores it, its own rules) it reads here;
nothing outside the task's module compares task names.

A task module's top level imports only ft.config and below (its declaration is read by every layer);
its functions import what they use (TRL, ft.training, ...), when they run.
"""

import dataclasses
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Optional

from ft.errors import FtError, did_you_mean

HEAD_NAMES = {
    "causal_lm": "a language model",
    "sequence_classification": "a sequence classifier",
    "diffusion": "a text-to-image pipeline",
    "image_text_to_text": "a vision-language model",
}
HEADS = tuple(HEAD_NAMES)
EVALUATIONS = ("answers", "pairs", "prompts")  # what `ft eval` scores; None: it does not score the task
ENTRY_POINTS = "ft.tasks"


@dataclass(frozen=True)
class Task:
    """One training task. `build_trainer(cfg, run_dir, resuming)` returns a ready transformers Trainer,
    which ft's session (ft.training.session) trains, evaluates, saves and finishes; a task with a loop of its
    own (no trainer exists for it) gives `train(cfg, command)` instead."""

    name: str
    summary: str  # one line, for `ft train --help`
    formats: tuple[str, ...]  # the data formats it trains on; synthetic data is generated in the first
    build_trainer: Optional[Callable] = None
    train: Optional[Callable] = None
    section: Optional[type] = None  # its config dataclass, at cfg.<section_name>; only this task reads it
    section_name: Optional[str] = None  # default: the task's name
    head: str = "causal_lm"  # the model it loads: one of HEADS
    evaluation: Optional[str] = None  # how `ft eval` scores a run: one of EVALUATIONS; None: it does not
    no_evaluation: str = ""  # why not, when evaluation is None (ends `ft eval`'s one-line refusal)
    # (options, cfg, run_dir) -> results: `ft eval` of its runs by the task itself, where none of EVALUATIONS fits
    # (their models or data are not the text ones ft.finish.evaluate loads); set evaluation=None with it
    evaluate: Optional[Callable] = None
    outputs: tuple[str, ...] = ("adapter", "tokenizer", "config.yaml", "README.md", "loss.png")  # its run dir
    packing: bool = False  # training.packing / padding_free apply (SFT's sequence packing)
    cache: bool = False  # its tokenized datasets go through ft.data.cache (`ft preprocess` builds them ahead)
    check_config: Optional[Callable] = None  # (cfg) -> None: its rules on the config alone (raise FtError)
    check_machine: Optional[Callable] = None  # (cfg, hw) -> None: what it asks of this machine
    check_inputs: Optional[Callable] = None  # (cfg) -> None: its inputs, before anything loads
    offline_models: tuple[str, ...] = ()  # model.name_or_path values it builds offline (besides "tiny")
    # (cfg, trainer) -> metrics: what the run learned, printed and saved at the end of training (one process);
    # None: the held-out exact match of ft.finish.answers, where the task is scored on its answers
    report: Optional[Callable] = None
    # (cfg, run_dir, trainer, metrics) -> None: writes its model card (README.md, and what it shows); None: the
    # text card of ft.finish.card
    card: Optional[Callable] = None
    # {format: (run_dir, cfg, out) -> None}: `ft export format=<format>` formats the task writes itself (into the
    # new directory `out`, refusing in one line what it cannot export)
    exports: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if (self.build_trainer is None) == (self.train is None):
            raise TypeError(f"Task {self.name}: give build_trainer or train, not both or neither")
        if self.head not in HEADS:
            raise TypeError(f"Task {self.name}: head={self.head} is not one of {HEADS}")
        if self.evaluation not in (*EVALUATIONS, None):
            raise TypeError(f"Task {self.name}: evaluation={self.evaluation} is not one of {EVALUATIONS} or None")
        if self.evaluate is not None and self.evaluation is not None:
            raise TypeError(f"Task {self.name}: give evaluation (ft's scoring) or evaluate (its own), not both")
        if self.section is not None and not dataclasses.is_dataclass(self.section):
            raise TypeError(f"Task {self.name}: section must be a dataclass")

    @property
    def key(self) -> Optional[str]:
        """The config section's key (cfg.<key>), None without a section."""
        return (self.section_name or self.name) if self.section is not None else None

    def settings(self, cfg):
        """This task's config section of `cfg`."""
        return getattr(cfg, self.key)


_registered: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task (ft's own are found by `tasks()`; an outside module registers when it is named)."""
    if not isinstance(task, Task):
        raise TypeError(f"register() takes a Task, got {type(task).__name__}")
    _registered[task.name] = task
    _config_class.cache_clear()
    return task


@cache
def _discover() -> None:
    """ft's own tasks (the modules and packages of ft.tasks) and the `ft.tasks` entry points."""
    ours = importlib.util.find_spec("ft.tasks").submodule_search_locations  # found, not imported: a plugin table
    for info in pkgutil.iter_modules(ours):
        _register_module(f"ft.tasks.{info.name}")
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS):
        _register_module(point.value.split(":")[0])  # a module, or module:attribute


def _register_module(module_name: str) -> Task:
    module = importlib.import_module(module_name)
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise FtError(f"task={module_name}: the module declares no TASK = ft.config.registry.Task(...)")
    return register(task)


def tasks() -> dict[str, Task]:
    """Every known task by name."""
    _discover()
    return dict(_registered)


def get(name: str) -> Task:
    """The task `task=name` selects: a registered name, or a module path (`my_pkg.my_module`) whose TASK is
    registered now."""
    known = tasks()
    if name in known:
        return known[name]
    if "." in name:
        try:
            task = _register_module(name)
        except ImportError as e:
            raise FtError(f"task={name}: cannot import {name} ({e}): check the module path and PYTHONPATH") from None
        _registered[name] = task  # also under the module path the config names
        return task
    raise FtError(
        f"task={name} is not a task: {did_you_mean(name, known)}choose one of {', '.join(known)}, or name a module "
        f"of your own (task=my_pkg.my_module)"
    )


def owner_of(model_name: str) -> Optional[Task]:
    """The task that builds `model_name` offline (e.g. tiny-sd), if any."""
    return next((t for t in tasks().values() if model_name in t.offline_models), None)


def section_owners() -> dict[str, Task]:
    """Config section key -> the task that reads it."""
    return {t.key: t for t in tasks().values() if t.key is not None}


@cache
def _config_class():
    from ft.config.schema import FtConfig

    sections = [(key, Optional[t.section], dataclasses.field(default=None)) for key, t in section_owners().items()]
    return dataclasses.make_dataclass("FtConfig", sections, bases=(FtConfig,))


def config_class():
    """The root config: ft.config.schema.FtConfig plus one optional section per task (None unless the run's
    task is the one that reads it)."""
    _discover()
    return _config_class()
