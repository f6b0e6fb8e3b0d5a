"""The run directory: where it is, and the files ft writes there besides the trainer's own.

<output_dir>/<run_name>/
    adapter_config.json, adapter_model.safetensors   the adapter (model.safetensors if full FT)
    pytorch_lora_weights.safetensors, samples/, samples.png   task=text_to_image: LoRA (diffusers), renders
    tokenizer.json, tokenizer_config.json, chat_template.jinja
    processor_config.json, example.png                task=vlm: the processor, the card's example image
    config.yaml                                       the resolved config
    trainer_state.json, {base,train,eval,all}_results.json
    log_history.jsonl                                 each logged row (loss, eval_loss ...) as it is logged
    tensorboard/                                      TensorBoard event files
    loss.png                                          train / eval loss curves
    README.md                                         the model card (ft.finish.card)
    checkpoint-<step>/                                resumable checkpoints
    samples.jsonl, wandb/, mlruns/                    when those callbacks / loggers are on
    accelerate_config.yaml                            when ft relaunched itself (ft.run.distributed)
"""

import contextlib
import os
import shutil
import time
from pathlib import Path

from ft.errors import FtError

RUN_DIR_ENV = "FT_RUN_DIR"  # set by a launcher so that every rank uses the same directory

# The names in a run directory: ft's own files, and the libraries' files that ft reads
CONFIG = "config.yaml"  # the resolved config
CARD = "README.md"  # the model card
LOSS_PLOT = "loss.png"
TENSORBOARD = "tensorboard"
MLFLOW = "mlruns"
SAMPLES = "samples.jsonl"
LOG_HISTORY = "log_history.jsonl"  # the trainer's log history, a row per line as it is logged (read live)
LAUNCH_CONFIG = "accelerate_config.yaml"  # written by the relaunch under accelerate
MERGED = "merged"  # `ft merge`'s default output
EXAMPLE_IMAGE = "example.png"  # task=vlm: the image its model card shows and its usage snippet asks about
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"  # PEFT's
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LoRA (task=text_to_image)
MODEL_CONFIG = "config.json"  # transformers': a full fine-tune or merged model
TRAINER_STATE = "trainer_state.json"  # the Trainer's; in the run dir itself it marks a finished run
CHECKPOINT_PREFIX = "checkpoint-"


def run_dir_for(cfg) -> Path:
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    name = cfg.training.run_name or f"{Path(str(cfg.recipe)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.training.output_dir).expanduser() / name


def task_head(run_dir) -> str | None:
    """The model head (ft.config.registry.HEADS) of the task that trained run_dir, as its config.yaml names the
    task (a name or a module path); None where that cannot be read."""
    import yaml

    from ft.config import registry

    try:
        task = yaml.safe_load((Path(run_dir).expanduser() / CONFIG).read_text()).get("task")
        return registry.get(task).head if isinstance(task, str) else None
    except (OSError, yaml.YAMLError, AttributeError, FtError):
        return None


def holds_files(run_dir: Path) -> bool:
    """Whether run_dir has anything in it besides the accelerate config a launcher wrote there."""
    return run_dir.is_dir() and any(p.name != LAUNCH_CONFIG for p in run_dir.iterdir())


@contextlib.contextmanager
def new_run_dir(run_dir: Path, config_yaml: str, plan=None, create: bool = True):
    """Make the run directory with the resolved config in it; remove what was made again if the
    setup inside the block fails, so a bad input leaves nothing behind. A run dir that already
    holds a run (ft.run.resume.plan decided to continue or replace it) is never removed: it is
    continued as is, or cleared only once the setup has succeeded. Only the main process makes
    or clears it (create=True); the other ranks just use it."""
    if not create:
        yield run_dir
        return
    if plan is not None and (plan.existing or plan.replace):
        _check_writable(run_dir)
        yield run_dir
        if plan.replace:
            for child in run_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            (run_dir / CONFIG).write_text(config_yaml)
        return
    if holds_files(run_dir):
        raise FtError(
            f"run directory {run_dir} already exists and is not empty: set another training.run_name or remove it"
        )
    created = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG).write_text(config_yaml)
    except OSError as e:
        raise FtError(
            f"cannot write the run directory {run_dir} ({e.strerror}): set training.output_dir to a writable place"
        ) from None
    try:
        yield run_dir
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            (run_dir / CONFIG).unlink(missing_ok=True)
        raise


def _check_writable(run_dir: Path) -> None:
    probe = run_dir / ".ft-write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise FtError(
            f"cannot write the run directory {run_dir} ({e.strerror}): set training.output_dir to a writable place"
        ) from None


def append_log(run_dir: Path, row: dict) -> None:
    """Add a logged row to log_history.jsonl, so that what trains can be watched (ft studio's chart) before
    trainer_state.json exists."""
    import json

    with (Path(run_dir) / LOG_HISTORY).open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")


def plot_loss(log_history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train"), ("eval_loss", "eval")):
        points = [(row["step"], row[key]) for row in log_history if key in row]
        if points:
            ax.plot(*zip(*points), marker="o" if label == "eval" else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(path.parent.name)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
