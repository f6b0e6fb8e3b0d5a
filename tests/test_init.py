"""`python -m ft init`: a commented recipe file that composes to exactly the recipe it starts from. That the
file it writes trains, names its run dir and resumes is tests/test_recipe_files.py's."""

import dataclasses
import re

import pytest
import yaml

from conftest import assert_refused, run_ft
from ft import config
from ft.commands import init as init_recipe


@pytest.mark.parametrize("recipe", config.group_options("recipe"))
def test_init_writes_a_file_that_composes_to_its_recipe(recipe, tmp_path):
    path = init_recipe.write(str(tmp_path / "mine.yaml"), recipe)
    from_file = config.compose([str(path)])
    shipped = config.compose([f"recipe={recipe}"])
    assert from_file.recipe == str(path.resolve())
    assert dataclasses.replace(from_file, recipe=recipe) == shipped
    # every key it sets sits under a comment: its help text from the schema
    lines = path.read_text().splitlines()
    body = lines[lines.index("  - _self_  # this file's values win over it") + 1 :]
    keys = [i for i, line in enumerate(body) if re.match(r"^\s*\w+: \S", line)]
    assert len(keys) >= len(init_recipe.COMMON)
    for i in keys:
        assert body[i - 1].lstrip().startswith("#"), body[i - 1 : i + 1]
    assert "# peak learning rate (> 0)" in path.read_text()
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == shipped.training.learning_rate


def test_init_refuses_to_overwrite_and_names_unknown_recipes(tmp_path):
    existing = tmp_path / "mine.yaml"
    existing.write_text("# mine\n")
    result = run_ft("init", str(existing))
    assert_refused(result.returncode, result.stderr, "mine.yaml already exists")
    assert existing.read_text() == "# mine\n"
    result = run_ft("init", str(tmp_path / "new.yaml"), "recipe=tiny_dpp")
    assert_refused(result.returncode, result.stderr, "unknown recipe 'tiny_dpp'", "did you mean 'tiny_dpo'")
    result = run_ft("init", str(tmp_path / "new"))
    assert_refused(result.returncode, result.stderr, "ends in .yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]
