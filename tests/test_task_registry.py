"""A task from outside ft, through the public interface only: a module declaring `TASK = Task(...)` with its
config section, selected with task=my_pkg.my_module or registered by an entry point. It trains end to end,
is refused in one line on a wrong data format or another task's key, and shows in `ft train --help`."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import NO_EVAL, QUICK, assert_refused, environment, run_ft

OUTSIDE_TASK = '''
"""SFT with a trainer subclass of the user's own, which counts its optimizer steps."""

from dataclasses import dataclass

from ft.config.registry import Task
from ft.options import option


@dataclass
class CountingConfig:
    note: str = option("counted", help="written next to the step count")


def counting_config(cfg, hw, run_dir, has_eval, resuming=False):
    from trl import SFTConfig

    from ft.training import trainer_args

    return SFTConfig(**trainer_args.common(cfg, hw, run_dir, has_eval, resuming), max_length=cfg.training.max_length)


def build_trainer(cfg, run_dir, resuming=False):
    from trl import SFTTrainer

    from ft.training import build

    class CountingSFTTrainer(SFTTrainer):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            (run_dir / "steps.txt").write_text(f"{self.state.global_step + 1} {cfg.counting.note}")
            return loss

    return build.trainer(CountingSFTTrainer, counting_config, cfg, run_dir, resuming)


TASK = Task(
    name="counting",
    summary="SFT that counts its steps (a task from outside ft)",
    formats=("messages", "prompt_completion"),
    build_trainer=build_trainer,
    section=CountingConfig,
)
'''


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A package of the user's own on PYTHONPATH, with an entry point that registers its task."""
    root = tmp_path_factory.mktemp("outside")
    (root / "my_tasks").mkdir()
    (root / "my_tasks" / "__init__.py").write_text("")
    (root / "my_tasks" / "counting.py").write_text(OUTSIDE_TASK)
    info = root / "my_tasks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tasks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("[ft.tasks]\ncounting = my_tasks.counting\n"))
    return {"PYTHONPATH": str(root)}


@pytest.mark.slow
def test_an_outside_task_trains_end_to_end(outside, tmp_path):
    done = run_ft(
        "train", "task=my_tasks.counting", "counting.note=by-me", f"training.output_dir={tmp_path}",
        "training.run_name=run", *QUICK, *NO_EVAL, env_extra=outside,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert (run_dir / "steps.txt").read_text() == "5 by-me"  # its own trainer ran, with its own section
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert "task: my_tasks.counting" in (run_dir / "config.yaml").read_text()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["task=my_tasks.counting", "data.format=preference"], "which task=counting cannot train on"),
        (["task=my_tasks.counting", "dpo.beta=0.2"], "dpo.beta is read by task=dpo only"),
        (["task=sft", "counting.note=x"], "counting.note is read by task=counting only"),  # by its entry point
    ],
)
def test_an_outside_task_is_refused_in_one_line(outside, overrides, expected, tmp_path):
    done = run_ft("train", f"training.output_dir={tmp_path}", *overrides, env_extra=outside)
    assert_refused(done.returncode, done.stderr, expected)
    assert not any(tmp_path.iterdir())


def test_an_outside_task_shows_in_the_help(outside):
    done = run_ft("train", "--help", env_extra=outside)
    assert done.returncode == 0, done.stderr
    assert "counting  " in done.stdout and "SFT that counts its steps (a task from outside ft)" in done.stdout


OWN_TASKS = {  # module -> its declaration: tasks of one's own that train what ft's vlm and text_to_image train
    "vlm": 'Task(name="my_vlm", summary="s", formats=(), build_trainer=print, head="image_text_to_text")',
    "images": 'Task(name="my_images", summary="s", formats=(), train=print, head="diffusion")',
}


@pytest.mark.parametrize(
    "task, routed",
    [
        ("vlm", "vision"), ("vlm_dpo", "vision"), ("text_to_image", "image"), ("sft", "text"),
        ("my_heads.vlm", "vision"), ("my_heads.images", "image"), ("no_such_module.task", "text"),
    ],
)  # fmt: skip
def test_generate_chat_and_merge_route_a_run_by_its_tasks_head(task, routed, tmp_path):
    """`ft generate / chat / merge` serve a run by the model its task trains (a task of one's own included),
    checked in a fresh process: the registry of this one keeps the modules it imported."""
    (tmp_path / "my_heads").mkdir()
    (tmp_path / "my_heads" / "__init__.py").write_text("")
    for module, declaration in OWN_TASKS.items():
        (tmp_path / "my_heads" / f"{module}.py").write_text(
            f"from ft.config.registry import Task\n\nTASK = {declaration}\n"
        )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"task: {task}\nmodel:\n  name_or_path: tiny\n")
    check = (
        "import sys; from ft.tasks.vision_language.generate import is_vision_run; "
        "from ft.tasks.text_to_image.generate import is_image_run; "
        "print('vision' if is_vision_run(sys.argv[1]) else 'image' if is_image_run(sys.argv[1]) else 'text')"
    )
    env = {**environment(), "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", check, str(run_dir)], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == routed, done.stderr[-3000:]
