"""Rules on the task (ft.config.registry): each task reads its own data formats (ft.data.detect.check_format)
and its own config section; a task's own rules are declared with it (`Task.check_config`)."""

import dataclasses

from ft.config import registry
from ft.data.detect import check_format
from ft.errors import FtError


def check_task(cfg) -> None:
    task = registry.get(cfg.task)
    if cfg.data.format != "auto":  # auto: checked once detected (ft.data.detect)
        check_format(cfg.task, cfg.data.format)
    if not task.packing and (cfg.training.packing or cfg.training.padding_free):
        raise FtError(
            f"training.packing and training.padding_free are for task=sft only: unset them for task={cfg.task}"
        )
    if cfg.model.adapter and cfg.peft.method == "none":
        raise FtError("model.adapter continues training an adapter, but peft.method=none trains the whole model")
    if task.check_config is not None:
        task.check_config(cfg)


def check_sections(cfg, task: registry.Task) -> None:
    """The task's own section is there; another task's section, set by a recipe or an override, is refused."""
    for key, owner in registry.section_owners().items():
        settings = getattr(cfg, key, None)
        if owner is task or owner.name == task.name:
            if settings is None:
                setattr(cfg, key, task.section())
        elif settings is not None:
            raise FtError(
                f"{_first_set(key, settings)} is read by task={owner.name} only, and this run is task={cfg.task}: "
                f"drop it, or set task={owner.name}"
            )


def _first_set(key: str, settings) -> str:
    """The first key of a section that differs from its default (the section's name if none does)."""
    for f in dataclasses.fields(settings):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if getattr(settings, f.name) != default:
            return f"{key}.{f.name}"
    return key
