"""`ft train` with task=distill: on-policy knowledge distillation from a teacher, top to bottom.

checks (the teacher there, its vocabulary the student's) -> run dir -> prompts (data.format=messages: each
conversation up to its last assistant turn; or data.format=prompts) -> tokenizer -> student (model.*,
with LoRA or in full) -> the teacher (a finished ft run's adapter merged into its base, or a model directory
/ hub id) -> PEFT config -> DistillationConfig (the shared TrainingArguments + the `distill` section) ->
DistillationTrainer + callbacks -> train -> finish, the same session as SFT (ft.training.session).

Each step the student answers the step's prompts itself (sampled at distill.temperature, at most
distill.max_completion_length tokens), and at every token of its answers it is pulled toward the teacher's
next-token distribution by a generalized Jensen-Shannon divergence (distill.beta: 0 forward KL, 1 reverse
KL). The reference answers of the data are never trained on: with data.format=messages they are what the
end-of-run exact match compares against. Teacher and student must share one tokenizer: the divergence
compares their distributions token by token. The teacher may be larger than the student, and of another
shape; it is held in memory beside the student, frozen.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ft.config.registry import Task
from ft.errors import FtError
from ft.options import option


@dataclass
class DistillConfig:
    """TRL's DistillationConfig settings, and the teacher."""

    teacher: Optional[str] = option(
        None, help="the teacher: a finished ft run's directory (adapter merged into its base), a model dir or hub id"
    )
    beta: float = option(
        1.0, ge=0, le=1, help="the divergence (generalized JSD): 0 forward KL, 0.5 JSD, 1 reverse KL (TRL's beta)"
    )
    temperature: float = option(1.0, gt=0, help="temperature of the student's sampled answers and of the loss")
    top_p: float = option(1.0, gt=0, le=1, help="nucleus sampling of the student's answers")
    max_completion_length: int = option(16, ge=1, help="tokens the student generates per prompt at most")


def check_config(cfg) -> None:
    if not cfg.distill.teacher:
        raise FtError(
            "task=distill learns from a teacher: set distill.teacher to a finished run's directory (runs/<run>), "
            "a model directory or a hub id"
        )


def check_inputs(cfg) -> None:
    """The teacher is there, generates text, and reads the student's tokens: the same vocabulary, checked on
    the tokenizers and the model configs before any weights load."""
    teacher = cfg.distill.teacher
    where, run_cfg = _teacher_source(teacher)
    from transformers import AutoConfig, AutoTokenizer

    from ft import models

    try:
        teacher_tokenizer = AutoTokenizer.from_pretrained(where["tokenizer"])
        teacher_config = AutoConfig.from_pretrained(where["config"])
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FtError(f"distill.teacher={teacher}: cannot read its tokenizer and config ({reason})") from None
    student_tokenizer = models.load_tokenizer(cfg.model)
    student_config = models.load_config(cfg.model)
    student = f"the student, model.name_or_path={cfg.model.name_or_path}"
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise FtError(
            f"distill.teacher={teacher} has another vocabulary than {student} ({len(teacher_tokenizer)} tokens vs "
            f"{len(student_tokenizer)}): distillation compares next-token distributions token by token, so choose a "
            f"student with the teacher's tokenizer"
        )
    teacher_size, student_size = (c.get_text_config().vocab_size for c in (teacher_config, student_config))
    if teacher_size != student_size:
        raise FtError(
            f"distill.teacher={teacher} has another output layer than {student} ({teacher_size} tokens vs "
            f"{student_size}): distillation compares next-token distributions token by token, so choose a student "
            f"with the teacher's vocab_size"
        )
    if run_cfg is not None and run_cfg.peft.method == "llama_adapter":
        raise FtError(
            f"distill.teacher={teacher} is a Llama-Adapter run, which cannot be merged into a plain model: use a "
            f"LoRA (or full) run as the teacher"
        )


def _teacher_source(teacher: str) -> tuple[dict, Optional[object]]:
    """Where the teacher's tokenizer and model config are read ({"tokenizer": ..., "config": ...}), and its
    run's config when it is a finished ft run; one line when it is missing or not a language model."""
    from ft.config import registry
    from ft.run import rundir

    path = Path(teacher).expanduser()
    if path.is_dir() and (path / rundir.CONFIG).is_file():  # an ft run directory
        from ft.finish import loading

        run_cfg = loading.load_config(path)
        head = registry.get(run_cfg.task).head
        if head != "causal_lm":
            raise FtError(
                f"distill.teacher={teacher} is {registry.HEAD_NAMES[head]} (task={run_cfg.task}), not a language "
                f"model: the teacher must generate text"
            )
        if not any((path / f).is_file() for f in (rundir.ADAPTER_CONFIG, rundir.MODEL_CONFIG)):
            raise FtError(
                f"distill.teacher={teacher} is a run directory with no saved model (no {rundir.ADAPTER_CONFIG} or "
                f"{rundir.MODEL_CONFIG}): is its training finished?"
            )
        config = loading.base_model_path(run_cfg) if loading.is_adapter(path) else path
        return {"tokenizer": str(path), "config": str(config)}, run_cfg
    if path.is_dir():
        if not (path / rundir.MODEL_CONFIG).is_file():
            raise FtError(
                f"distill.teacher={teacher} holds no {rundir.MODEL_CONFIG}: point it to a finished run's directory "
                f"or a saved model"
            )
        return {"tokenizer": str(path), "config": str(path)}, None
    from huggingface_hub import constants, try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(teacher, rundir.MODEL_CONFIG), str):
        if constants.HF_HUB_OFFLINE:
            raise FtError(
                f"distill.teacher={teacher} is neither a directory nor in the hub cache ({constants.HF_HUB_CACHE}) and "
                f"HF_HUB_OFFLINE=1: point it to a finished run's directory, or download the model first"
            )
        from ft.rules.inputs import hub_reachable

        hub_reachable(f"distill.teacher={teacher}")
    return {"tokenizer": teacher, "config": teacher}, None


def load_teacher(cfg, dtype):
    """The teacher as a plain transformers model in `dtype`, in eval mode: a run's adapter merged into its base
    (dequantized first, for a QLoRA run), a full fine-tune's or a model directory's weights, or a hub model."""
    from ft.finish import loading

    where, run_cfg = _teacher_source(cfg.distill.teacher)
    if run_cfg is not None:
        model = loading.load_model(Path(cfg.distill.teacher).expanduser(), run_cfg, device_map=None, dequantize=True)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(where["config"], dtype=dtype)
    return model.to(dtype).eval()


def as_prompts(cfg, tokenizer, train_dataset, eval_dataset, args):
    """Conversations become their prompt: every turn before the last assistant turn (the reference answer,
    which the student never sees). Prompts rows pass as they are."""

    def prompt_of(row):
        messages = row["messages"]
        return {"prompt": messages[:-1] if messages[-1]["role"] == "assistant" else messages}

    def convert(dataset):
        if dataset is None or "messages" not in dataset.column_names:
            return dataset
        return dataset.map(prompt_of, remove_columns=dataset.column_names)

    return convert(train_dataset), convert(eval_dataset)


def distill_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import DistillationConfig

    from ft.training import trainer_args

    d, common = cfg.distill, trainer_args.common(cfg, hw, run_dir, has_eval, resuming)
    # The trainer counts the prompt and generated tokens itself; the Trainer's own count looks for input_ids in
    # the batch (raw prompts here) and would warn at every step.
    common["include_num_input_tokens_seen"] = "no"
    return DistillationConfig(
        **common,
        beta=d.beta,
        temperature=d.temperature,
        top_p=d.top_p,
        max_completion_length=d.max_completion_length,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready DistillationTrainer (teacher loaded and merged, student wrapped); nothing
    trained yet."""
    from trl import DistillationTrainer

    from ft.run import hardware
    from ft.training import build

    dtype = hardware.torch_dtype(cfg.model.dtype, hardware.precision(cfg.training.precision, hardware.detect()))
    teacher = load_teacher(cfg, dtype)
    return build.trainer(
        DistillationTrainer, distill_config, cfg, run_dir, resuming, prepare=as_prompts, teacher_model=teacher
    )


TASK = Task(
    name="distill",
    summary="on-policy distillation: a student learns a teacher's next-token distributions on its own answers",
    formats=("messages", "prompts"),
    build_trainer=build_trainer,
    section=DistillConfig,
    evaluation="answers",
    check_config=check_config,
    check_inputs=check_inputs,
)
