"""Recipe files kept anywhere: `ft train FILE.yaml` / `recipe=FILE.yaml`, extending shipped recipes and
using group options kept beside the file; a broken file is refused in one line naming file and line."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import NO_EVAL, QUICK, assert_refused, run_ft


def _project(tmp_path: Path) -> Path:
    """A project outside the repo: a recipe extending tiny_dpo and its own model option beside it."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "narrow.yaml").write_text("# a narrower tiny model\ntiny:\n  hidden_size: 128\n")
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(
        "# @package _global_\n"
        "defaults:\n"
        "  - tiny_dpo\n"
        "  - override /model: narrow\n"
        "  - _self_\n"
        "training:\n"
        "  max_steps: 7\n"
        "  learning_rate: 3.0e-4\n"
    )
    return recipe


def _job(*args: str, cwd: Path) -> dict:
    result = run_ft("train", *args, "--cfg", "job", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


def test_a_recipe_file_extends_a_shipped_recipe_and_uses_its_own_group_options(tmp_path):
    recipe = _project(tmp_path)
    as_argument = _job("mine.yaml", "training.max_steps=9", cwd=tmp_path)
    as_recipe = _job(f"recipe={recipe}", "training.max_steps=9", cwd=tmp_path)
    assert as_argument == as_recipe
    assert as_argument["task"] == "dpo"  # from tiny_dpo
    assert as_argument["dpo"]["beta"] == 0.1
    assert as_argument["model"]["tiny"]["hidden_size"] == 128  # model/narrow.yaml beside the file
    assert as_argument["training"]["learning_rate"] == 3.0e-4  # the file
    assert as_argument["training"]["max_steps"] == 9  # the command line wins
    assert as_argument["recipe"] == str(recipe)  # recorded: the run dir name and resume use it
    # the project's option is selectable on the command line too
    wide = tmp_path / "model" / "wide.yaml"
    wide.write_text("tiny:\n  hidden_size: 512\n")
    assert _job("mine.yaml", "model=wide", cwd=tmp_path)["model"]["tiny"]["hidden_size"] == 512


BROKEN = {
    "yaml_syntax": ("training:\n  max_steps: [3\n", ["bad.yaml:3: invalid YAML", "at line 2"]),
    "unknown_key": (
        "training:\n  learning_rate: 1.0e-4\n  max_stepz: 3\n",
        ["bad.yaml:3: unknown key 'training.max_stepz'", "did you mean 'max_steps'"],
    ),
    "unknown_recipe": ("defaults:\n  - defualt\n  - _self_\n", ["bad.yaml:2: unknown defaults entry 'defualt'"]),
    "unknown_option": (
        "defaults:\n  - default\n  - override /peft: qlorra\n",
        ["bad.yaml:3: unknown defaults entry 'override /peft: qlorra'", "did you mean 'qlora'"],
    ),
    "unknown_group": ("defaults:\n  - override /modle: tiny\n", ["bad.yaml:2:", "did you mean 'model'"]),
    "wrong_type": ("training:\n  max_steps: many\n", ["bad.yaml:2:", "'many'", "Integer"]),
    "bad_choice": ("optim:\n\n  name: adamw_tourch\n", ["bad.yaml:3: optim.name=adamw_tourch", "adamw_torch"]),
    "not_a_mapping": ("- a\n- b\n", ["bad.yaml:1: a recipe is a mapping"]),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_recipe_file_is_one_line_naming_file_and_line(case, tmp_path):
    text, expected = BROKEN[case]
    (tmp_path / "bad.yaml").write_text(text)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ft", "train", "bad.yaml", *QUICK, *NO_EVAL],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    assert_refused(result.returncode, stderr, *expected)
    assert not imported & {"torch", "transformers"}, "refused after the heavy imports"
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.yaml"], "something was written"


def test_a_missing_recipe_file_and_a_stray_argument_are_refused(tmp_path):
    assert_refused(*_refusal(run_ft("train", "nothere.yaml", cwd=tmp_path)), "recipe file nothere.yaml not found")
    assert_refused(*_refusal(run_ft("train", "recipe=./no/such.yaml", cwd=tmp_path)), "not found")
    assert_refused(*_refusal(run_ft("train", "mine", cwd=tmp_path)), "'mine' is neither key=value nor a recipe file")


def _refusal(result):
    return result.returncode, result.stderr


@pytest.mark.slow
def test_a_recipe_file_trains_names_its_run_dir_and_resumes(tmp_path):
    """The file is the one `python -m ft init` writes (recipe.yaml, from the default recipe): it trains as
    written."""
    written = run_ft("init", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "python -m ft train recipe.yaml" in written.stdout
    recipe = tmp_path / "recipe.yaml"
    out = tmp_path / "runs"
    args = [
        "recipe.yaml",
        *QUICK,
        *NO_EVAL,
        "training.max_steps=2",
        "training.save_strategy=steps",
        "training.save_steps=2",
        f"training.output_dir={out}",
    ]
    result = run_ft("train", *args, cwd=tmp_path, warm=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("recipe-"), run_dir.name  # the file's name, not its path
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["recipe"] == str(recipe)
    # The same command continues the run: its recorded config matches the file's again
    (run_dir / "trainer_state.json").unlink()  # as if it had been stopped after its checkpoint
    again = run_ft("train", *args, f"training.run_name={run_dir.name}", cwd=tmp_path, warm=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {run_dir / 'checkpoint-2'}" in again.stdout
