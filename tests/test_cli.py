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


def test_unknown_command_is_one_line_exit_2():
    result = run_ft("trian")
    assert_refused(result.returncode, result.stderr, "train")


def _options_classes():
    from ft.commands.slurm import SbatchOptions
    from ft.finish.evaluate import EvalOptions
    from ft.finish.generate import ChatOptions, GenerateOptions
    from ft.finish.hub import PushOptions
    from ft.finish.merge import MergeOptions

    return {
        "generate": GenerateOptions,
        "chat": ChatOptions,
        "eval": EvalOptions,
        "merge": MergeOptions,
        "push": PushOptions,
        "sbatch": SbatchOptions,
    }


@pytest.mark.parametrize("command", ["generate", "chat", "eval", "merge", "push", "sbatch"])
def test_command_help_lists_every_option_with_its_default(command):
    import dataclasses

    from ft.options import is_required, shown

    result = run_ft(command, "--help", env_extra={"COLUMNS": "200"})  # one line per option
    assert result.returncode == 0, result.stderr
    usage, lines = result.stdout.split("\n\n")[0], result.stdout.splitlines()
    for field in dataclasses.fields(_options_classes()[command]):
        name = f"--{field.name.replace('_', '-')}" if command == "sbatch" else field.name
        assert name in usage, (name, usage)
        line = next(line for line in lines if line.split()[:1] == [name])
        assert field.metadata["help"] in line, line
        if is_required(field):
            assert "(required)" in line, line
        elif field.default is not None:
            assert f"(default: {shown(field.default)})" in line, line


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["generate", "run_dir=x", "prompt=hi", "max_new_token=8"],
            ["generate: unknown key 'max_new_token'", "did you mean 'max_new_tokens'?", "valid keys: run_dir, prompt"],
        ),
        (["chat", "run_dir=x", "prompt=hi"], ["chat: unknown key 'prompt'", "valid keys: run_dir, max_new_tokens"]),
        (["generate", "prompt=hi"], ["generate: run_dir=... is required", "valid keys"]),
        (["generate", "run_dir=x"], ["generate: prompt=... is required"]),
        (["generate", "run_dir=x", "prompt=  "], ["generate: prompt is empty"]),
        (["eval", "run_dir=x", "batch_size=big"], ["eval: batch_size=big is not a valid int"]),
        (["chat", "run_dir=x", "top_p=high"], ["chat: top_p=high is not a valid float"]),
        (["eval", "run_dir=x", "base=maybe"], ["eval: base=maybe is not a valid bool"]),
        (["merge", "runs/x"], ["merge: expected key=value, got 'runs/x'", "valid keys: run_dir, out"]),
        (["push", "run_dir=x", "privat=true"], ["unknown key 'privat'", "did you mean 'private'?"]),
        (["sbatch", "--nodes", "0", "--gpus-per-node", "1"], ["--nodes and --gpus-per-node must be >= 1"]),
    ],
)
def test_option_errors_are_one_line_with_exit_2(args, expected, capsys):
    from ft import cli

    assert_refused(cli.main(args), capsys.readouterr().err, *expected)


def test_key_value_pairs_fill_the_options_dataclass():
    from ft.finish.generate import GenerateOptions
    from ft.options import parse_pairs

    options = parse_pairs(
        GenerateOptions, ["run_dir=r", "prompt=a=b", "temperature=0.5", "show_prompt=yes"], "generate"
    )
    assert options == GenerateOptions(run_dir="r", prompt="a=b", temperature=0.5, show_prompt=True)
    assert options.max_new_tokens == 128 and options.do_sample is None and options.top_p is None
