import pytest

from conftest import assert_refused, run_ft


def test_help_does_not_import_torch():
    result = run_ft("--help")
    assert result.returncode == 0
    assert "train" in result.stdout and "recipes" in result.stdout
    probe = __import__("subprocess").run(
        [__import__("sys").executable, "-X", "importtime", "-m", "ft", "--help"], capture_output=True, text=True
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in probe.stderr.splitlines() if line.startswith("import time")}
    assert "ft.cli" in imported
    assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers", "trl", "peft", "hydra")}


def test_train_help_lists_groups_and_options():
    result = run_ft("train", "--help")
    assert result.returncode == 0
    assert "peft" in result.stdout and "lora" in result.stdout and "recipe" in result.stdout


def test_recipes_lists_every_recipe_with_a_description():
    from ft.config import RECIPE_DIR

    result = run_ft("recipes")
    assert result.returncode == 0
    listed = dict(line.split(None, 1) for line in result.stdout.strip().splitlines())
    assert set(listed) == {p.stem for p in RECIPE_DIR.glob("*.yaml")}
    assert all(len(description) > 10 for description in listed.values())


def test_cfg_job_prints_the_resolved_config():
    import yaml

    result = run_ft("train", "recipe=default", "training.max_steps=7", "peft.r=4", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["training"]["max_steps"] == 7 and cfg["peft"]["r"] == 4 and cfg["recipe"] == "default"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("training.leraning_rate=1e-4", ["unknown key 'training.leraning_rate'", "learning_rate"]),
        ("peft=lorax", ["unknown peft option 'lorax'", "lora", "none"]),
        ("recipe=no_such_recipe", ["unknown recipe 'no_such_recipe'", "default"]),
        ("nonsense.key=1", ["unknown key 'nonsense.key'", "training"]),
        ("training.max_steps=abc", ["training.max_steps", "abc"]),
        ("model.dtype=fp8", ["model.dtype=fp8", "bfloat16"]),
    ],
)
def test_config_errors_are_one_line_with_exit_2(override, expected, tmp_path):
    result = run_ft("train", override, f"training.output_dir={tmp_path}")
    assert_refused(result.returncode, result.stderr, *expected)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_unknown_command_is_one_line_exit_2():
    result = run_ft("trian")
    assert_refused(result.returncode, result.stderr, "train")
