"""task=vlm: LoRA / QLoRA on a vision-language model (Qwen2.5-VL, Gemma 3, LLaVA, SmolVLM / Idefics3) from
conversations about images, with TRL's SFTTrainer and the model's processor. The whole modality is this
package:

    schema.py    its config section (`vision.*`)
    rules.py     its rules on the config alone
    tiny.py      the offline tiny vision-language models (tiny-vlm-<family>)
    models.py    processor and model loading, which modules LoRA reaches, what QLoRA leaves unquantized
    data.py      image conversations in (two shapes), images opened and counted before training
    masks.py     which tokens carry the loss, checked per example before the first step
    sft.py       the trainer, top to bottom
    answers.py   greedy answers about images; the held-out exact match at the end of training
    generate.py  `ft generate image=` and `ft chat` (`/image PATH`) on a finished run
    finishing.py a finished run loaded back; `ft merge` into one AutoModelForImageTextToText
    evaluate.py  `ft eval`: held-out exact match, trained vs untrained
    card.py      the model card, with a held-out example image and a usage snippet that runs
"""

from ft.config.registry import Task
from ft.tasks.vision_language.schema import TINY_VLM_MODELS, VisionConfig


def build_trainer(cfg, run_dir, resuming: bool = False):
    from ft.tasks.vision_language import sft

    return sft.build_trainer(cfg, run_dir, resuming)


def check_config(cfg) -> None:
    from ft.tasks.vision_language import rules

    rules.check_config(cfg)


def check_inputs(cfg) -> None:
    from ft.tasks.vision_language import rules

    rules.check_inputs(cfg)


def report(cfg, trainer) -> dict:
    from ft.tasks.vision_language import answers

    return answers.report(cfg, trainer)


def evaluate_run(options, cfg, run_dir) -> dict:
    from ft.tasks.vision_language import evaluate

    return evaluate.evaluate(options, cfg, run_dir)


def write_card(cfg, run_dir, trainer, metrics) -> None:
    from ft.tasks.vision_language import card

    card.write(cfg, run_dir, trainer, metrics)


TASK = Task(
    name="vlm",
    summary="LoRA / QLoRA on a vision-language model from conversations about images (TRL's SFTTrainer)",
    formats=(),  # image conversations (data.py), recognised from their columns
    build_trainer=build_trainer,
    section=VisionConfig,
    section_name="vision",
    head="image_text_to_text",
    evaluate=evaluate_run,  # exact match on its held-out image questions (evaluate.py)
    outputs=("adapter", "processor", "config.yaml", "README.md", "example.png", "loss.png"),
    offline_models=tuple(TINY_VLM_MODELS),
    check_config=check_config,
    check_inputs=check_inputs,
    report=report,
    card=write_card,
)
