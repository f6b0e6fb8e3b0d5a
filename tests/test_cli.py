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
    from ft.commands.estimate import EstimateOptions
    from ft.commands.init import InitOptions
    from ft.commands.preview import PreviewOptions
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
        "data": PreviewOptions,
        "init": InitOptions,
        "estimate": EstimateOptions,
    }


COMMANDS = ["generate", "chat", "eval", "merge", "push", "sbatch", "data", "init", "estimate"]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_lists_every_option_with_its_default(command):
    import dataclasses

    from ft.options import is_required, shown

    result = run_ft(command, "--help", env_extra={"COLUMNS": "200"})  # one line per option
    assert result.returncode == 0, result.stderr
    usage, lines = result.stdout.split("\n\n")[0], result.stdout.splitlines()
    for field in dataclasses.fields(_options_classes()[command]):
        name = field.name
        assert f"{name}=" in usage, (name, usage)
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
        (["sbatch", "nodes=0", "gpus_per_node=1"], ["sbatch: nodes must be >= 1, got 0"]),
        (["sbatch", "nodes=2"], ["sbatch: gpus_per_node=... is required"]),
        (["data", "preview", "n=0"], ["data preview: n must be >= 1, got 0"]),
        (["data", "preview", "n=two"], ["data preview: n=two is not a valid int"]),
        (["init", "x.yaml", "form=tiny_dpo"], ["init: unknown key 'form'", "valid keys: recipe"]),
        (["init", "a.yaml", "b.yaml"], ["init: one PATH at most, got a.yaml b.yaml"]),
    ],
)
def test_option_errors_are_one_line_with_exit_2(args, expected, capsys):
    from ft import cli

    assert_refused(cli.main(args), capsys.readouterr().err, *expected)


def test_a_commands_own_keys_are_never_a_recipes():
    """sbatch, estimate and data preview take their own keys beside a recipe's overrides (ft.options.split_pairs):
    a bare key is the command's, so none may be a top-level key of the config (task, recipe, model, peft, ...)."""
    import dataclasses

    from ft.commands.estimate import EstimateOptions
    from ft.commands.preview import PreviewOptions
    from ft.commands.slurm import SbatchOptions
    from ft.config import registry

    top_level = {field.name for field in dataclasses.fields(registry.config_class())} | {"recipe"}
    for options in (SbatchOptions, PreviewOptions, EstimateOptions):
        assert not {field.name for field in dataclasses.fields(options)} & top_level, options


def test_key_value_pairs_fill_the_options_dataclass():
    from ft.finish.generate import GenerateOptions
    from ft.options import parse_pairs

    options = parse_pairs(
        GenerateOptions, ["run_dir=r", "prompt=a=b", "temperature=0.5", "show_prompt=yes"], "generate"
    )
    assert options == GenerateOptions(run_dir="r", prompt="a=b", temperature=0.5, show_prompt=True)
    assert options.max_new_tokens == 128 and options.do_sample is None and options.top_p is None
