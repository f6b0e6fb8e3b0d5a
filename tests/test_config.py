"""Every recipe and every option of every config group composes and validates (nothing loads)."""

import dataclasses
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from ft import config
from ft.config import reference
from ft.config.schema import FtConfig
from ft.errors import FtError

GROUP_OPTIONS = [
    (group, option) for group in config.GROUPS if group != "recipe" for option in config.group_options(group)
]
RECIPES = config.group_options("recipe")
# Options that only compose together with another group's option.
COMPANIONS = {("optim", name): ["peft=none"] for name in ("galore", "galore_layerwise", "galore_8bit")}
# the default recipe trains lm_head in full, which FSDP refuses
COMPANIONS[("distributed", "fsdp")] = ["peft.modules_to_save=null"]
COMPANIONS[("distributed", "fsdp_qlora")] = ["peft=qlora", "peft.modules_to_save=null"]
COMPANIONS[("data", "ultrafeedback")] = ["task=dpo"]
COMPANIONS[("data", "gsm8k")] = ["task=grpo"]


def test_there_is_something_to_check():
    assert len(GROUP_OPTIONS) >= 10 and "default" in RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes(recipe):
    cfg = config.compose([f"recipe={recipe}"])
    assert isinstance(cfg, FtConfig) and cfg.recipe == recipe
    assert config.recipe_descriptions()[recipe], f"recipes/{recipe}.yaml needs a header comment"


@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_every_group_option_composes(group, option):
    cfg = config.compose([f"{group}={option}", *COMPANIONS.get((group, option), [])])
    assert isinstance(cfg, FtConfig)


def _restated_defaults(settings: dict, defaults, prefix: str) -> list[str]:
    """The keys in `settings` (a group file's content) whose value is the schema default."""
    restated = []
    for key, value in settings.items():
        default = getattr(defaults, key)
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            restated += _restated_defaults(value, default, f"{prefix}{key}.")
        elif value == default:
            restated.append(f"{prefix}{key}={value}")
    return restated


@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_group_options_set_only_what_differs_from_the_schema(group, option):
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(OmegaConf.load(config.CONF_DIR / group / f"{option}.yaml")) or {}
    settings.pop("defaults", None)
    restated = _restated_defaults(settings, getattr(FtConfig(), group), f"{group}.")
    assert not restated, f"conf/{group}/{option}.yaml restates schema defaults, remove them: {', '.join(restated)}"


def test_every_key_has_help():
    assert all(help_text.strip() and "\n" not in help_text for *_, help_text in reference.reference())


def docs_generator():
    """docs/generate.py, which writes the manual's generated pages at `make docs`."""
    path = Path(__file__).parents[1] / "docs" / "generate.py"
    spec = importlib.util.spec_from_file_location("docs_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_page_lists_every_key_group_option_and_recipe():
    generator = docs_generator()
    page = generator.config_page()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for key, default, allowed, _ in reference.reference():
        cells = f"| `{key}` | {generator._code(default)} | {generator._code(allowed)} |"
        assert any(row.startswith(cells) for row in rows), key
    for group, option in GROUP_OPTIONS:
        assert any(row.startswith(f"| `{group}` |") and f"`{option}`" in row for row in rows), (group, option)
    assert all(any(row.startswith(f"| `{recipe}` |") for row in rows) for recipe in RECIPES)


def test_defaults_come_from_the_schema():
    cfg = config.compose(["recipe=default"])
    assert cfg.model.attn_implementation == "sdpa"
    assert cfg.peft.target_modules == "all-linear"
    assert cfg.training.precision == "auto"


def test_hub_ids_are_validated_without_loading():
    cfg = config.compose(["model=mistral_7b"])
    assert cfg.model.name_or_path == "mistralai/Mistral-7B-v0.1"
    with pytest.raises(FtError, match="neither a hub id"):
        config.compose(["model.name_or_path=not a/valid//id"])


def test_yaml_roundtrip_of_resolved_config():
    import yaml

    cfg = config.compose(["training.max_steps=3"])
    assert yaml.safe_load(config.to_yaml(cfg))["training"]["max_steps"] == 3


def test_copied_library_names_match_the_installed_libraries():
    """The schema lists what transformers and torch accept, so typos fail before they are imported."""
    import torch
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames
    from trl import DPOTrainer

    from ft.config import names, schema
    from ft.data import synthetic

    assert names.OPTIMIZERS == [o.value for o in OptimizerNames]
    assert names.SCHEDULERS == [s.value for s in SchedulerType]
    assert names.REPORT_TO == [*INTEGRATION_TO_CALLBACK, "none"]
    assert all(isinstance(getattr(torch, name), torch.dtype) for name in names.TORCH_DTYPES + names.BNB_STORAGE_DTYPES)
    assert schema.SYNTHETIC_TASKS == [*synthetic.TASKS, *synthetic.TOOL_TASKS]
    assert schema.SYNTHETIC_TOOL_TASKS == list(synthetic.TOOL_TASKS)
    assert names.DPO_LOSSES == re.findall(r'loss_type == "(\w+)"', inspect.getsource(DPOTrainer))
