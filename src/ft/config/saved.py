"""The config as a run saves it (config.yaml) and as it is read back."""

from pathlib import Path

from ft.config import registry


def to_yaml(cfg) -> str:
    """The config as YAML, without the sections of the tasks the run is not (they are None)."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.structured(cfg))
    unused = [key for key in registry.section_owners() if node.get(key, 0) is None]
    return OmegaConf.to_yaml({key: value for key, value in node.items() if key not in unused})


def load(path: Path):
    """A saved config.yaml as the typed config (keys added to the schema since get their defaults; a task of
    the user's own registers first, so that its section is known)."""
    from omegaconf import OmegaConf

    saved = OmegaConf.load(path)
    registry.get(saved.get("task", "sft"))
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(registry.config_class()), saved))
