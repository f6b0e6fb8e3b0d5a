"""`ft train` with task=vlm_dpo: DPO on image preference pairs, a LoRA on a vision-language model's language
model with TRL's DPOTrainer and the model's processor, top to bottom.

checks -> run dir -> image pairs (prompt turns with image parts or a prompt string with <image>, chosen,
rejected; every image opened, placeholders counted: vision_language/data.py) -> processor (its own chat
template: DPO needs no assistant masks, TRL's vision collator renders prompt and answers apart) -> model
(as task=vlm: QLoRA quantizes the language model only) -> LoRA on the language model (the projector in full
with vlm_dpo.train_projector) -> DPOConfig -> DPOTrainer, whose DataCollatorForVisionPreference turns
images into pixels batch by batch -> train -> evaluate -> save -> the held-out preference accuracy,
adapter off and on (report).

The reference is the model with the adapter switched off (TRL's default with a PEFT config). The section
`vlm_dpo` is task=dpo's settings and task=vlm's vision settings in one: a section key has one owner
(ft.config.registry.section_owners), so this task cannot read `dpo.*` or `vision.*`.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ft.config.registry import Task
from ft.errors import FtError
from ft.tasks.dpo import DpoConfig
from ft.tasks.vision_language.schema import TINY_VLM_MODELS, VisionConfig

PAIRS = 100  # held-out pairs scored at the end of training


@dataclass
class VlmDpoConfig(VisionConfig, DpoConfig):
    """task=vlm_dpo: task=dpo's settings (TRL's DPOConfig) and task=vlm's (what trains besides the language
    model's LoRA), under one key."""


def check_inputs(cfg) -> None:
    from ft.tasks.vision_language import rules

    rules.check_inputs(cfg)


def check_config(cfg) -> None:
    from ft.tasks.vision_language import rules

    rules.check_config(cfg)
    if cfg.vlm_dpo.precompute_ref_log_probs:
        raise FtError(
            "vlm_dpo.precompute_ref_log_probs: TRL's DPOTrainer turns images into pixels batch by batch and cannot "
            "precompute the reference on image pairs: leave it false"
        )


def dpo_config(cfg, hw, run_dir: Path, has_eval: bool, resuming: bool = False):
    from trl import DPOConfig

    from ft.tasks import dpo
    from ft.training import trainer_args

    return DPOConfig(
        **trainer_args.common(cfg, hw, run_dir, has_eval, resuming),
        **dpo.trl_settings(cfg.vlm_dpo),
        max_length=cfg.training.max_length,  # keep_start: the prompt's image tokens are never cut
        # the collator reads the prompt, answers and images of each row; the Trainer must not drop those columns
        remove_unused_columns=False,
    )


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready DPOTrainer on image pairs; nothing trained yet."""
    from accelerate import PartialState
    from trl import DPOTrainer

    from ft.run import hardware
    from ft.tasks.vision_language import data, models, sft

    hw = hardware.detect()
    settings = cfg.vlm_dpo
    with PartialState().main_process_first():  # images opened (and the tiny model built) once
        (train, evaluation), shape = data.load(cfg.data, pairs=True)
        processor = models.load_processor(cfg.model, settings)
    print(f"ft: {len(train)} image preference pairs ({shape})", flush=True)
    args = dpo_config(cfg, hw, run_dir, has_eval=evaluation is not None, resuming=resuming)
    return sft.trainer(DPOTrainer, args, cfg, hw, settings, processor, train, evaluation, run_dir)


def answer_log_probs(model, batch):
    """Each sequence's log-probability of its answer tokens (the collator's completion_mask), summed."""
    import torch

    inputs = {key: value for key, value in batch.items() if key != "completion_mask"}
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits[:, :-1].float()
    tokens = batch["input_ids"][:, 1:]
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return (log_probs * batch["completion_mask"][:, 1:]).sum(dim=1)


@contextlib.contextmanager
def starting_point(model):
    """The model training started from: with model.adapter, the frozen copy of that adapter TRL made as the
    reference ("ref"); else the base, adapter off."""
    from ft.finish.evaluate import untrained

    if "ref" not in getattr(model, "peft_config", {}):
        with untrained(model) as base:
            yield base
        return
    model.set_adapter("ref")
    try:
        yield model
    finally:
        model.set_adapter("default")


def margins(trainer, rows: list[dict]) -> tuple:
    """log p(chosen) - log p(rejected) of every pair, for the trained model and the one training started from."""
    import torch

    model, device, size = trainer.model, trainer.args.device, trainer.args.per_device_eval_batch_size
    model.eval()
    trained, base = [], []
    for start in range(0, len(rows), size):
        batch = trainer.data_collator([dict(row) for row in rows[start : start + size]])  # chosen rows, then rejected
        batch = {key: value.to(device) for key, value in batch.items()}
        trained.append(answer_log_probs(model, batch).view(2, -1))
        with starting_point(model) as base_model:
            base.append(answer_log_probs(base_model, batch).view(2, -1))
    trained, base = torch.cat(trained, dim=1), torch.cat(base, dim=1)
    return trained[0] - trained[1], base[0] - base[1]


def report(cfg, trainer) -> dict:
    """The share of held-out pairs whose chosen answer the model finds likelier than the rejected one,
    before (the starting point: model.adapter's or the base) and after training: printed and saved
    (preference_results.json)."""
    if trainer.eval_dataset is None:
        return {}
    rows = [trainer.eval_dataset[i] for i in range(min(PAIRS, len(trainer.eval_dataset)))]
    trained, base = margins(trainer, rows)
    metrics = {
        "base_preference_accuracy": (base > 0).double().mean().item(),
        "preference_accuracy": (trained > 0).double().mean().item(),
        "base_margin": base.mean().item(),
        "margin": trained.mean().item(),
    }
    print(
        f"ft: preference accuracy on {len(rows)} held-out image pairs: "
        f"{100 * metrics['base_preference_accuracy']:.1f}% (start) -> "
        f"{100 * metrics['preference_accuracy']:.1f}% (trained); mean log-prob margin chosen - rejected "
        f"{metrics['base_margin']:.2f} -> {metrics['margin']:.2f}",
        flush=True,
    )
    trainer.save_metrics("preference", metrics)
    return metrics


def card(cfg, run_dir, trainer, metrics) -> None:
    """task=vlm's card: a held-out image with its question and the chosen answer, the preference accuracy."""
    from ft.tasks.vision_language import card as vision_card

    vision_card.write(cfg, run_dir, trainer, metrics)


TASK = Task(
    name="vlm_dpo",
    summary="DPO on image preference pairs: LoRA on a vision-language model (TRL's DPOTrainer with its processor)",
    formats=(),  # image preference rows (vision_language/data.py), recognised from their columns
    build_trainer=build_trainer,
    section=VlmDpoConfig,
    head="image_text_to_text",
    evaluation=None,
    no_evaluation="an image DPO run is scored on its held-out image pairs at the end of training",
    outputs=("adapter", "processor", "config.yaml", "README.md", "example.png", "loss.png"),
    check_config=check_config,
    check_inputs=check_inputs,
    offline_models=tuple(TINY_VLM_MODELS),
    report=report,
    card=card,
)
