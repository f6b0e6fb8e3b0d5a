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
    generate.py  `ft generate image=PATH` on a vision-language run
"""

from ft.config.registry import Task
from ft.tasks.vision_language.schema import TINY_VLM_MODELS, VisionConfig


def build_trainer(cfg, run_dir, resuming: bool = False):
    from ft.tasks.vision_language import sft

    return sft.build_trainer(cfg, run_dir, resuming)


def check_config(cfg) -> None:
    from ft.tasks.vision_language import rules

    rules.check_config(cfg)


def report(cfg, trainer) -> dict:
    from ft.tasks.vision_language import answers

    return answers.report(cfg, trainer)


TASK = Task(
    name="vlm",
    summary="LoRA / QLoRA on a vision-language model from conversations about images (TRL's SFTTrainer)",
    formats=(),  # image conversations (data.py), recognised from their columns
    build_trainer=build_trainer,
    section=VisionConfig,
    section_name="vision",
    head="image_text_to_text",
    evaluation=None,
    no_evaluation="a vision-language run is scored on its held-out image questions at the end of training",
    outputs=("adapter", "processor", "config.yaml", "README.md", "loss.png"),
    offline_models=tuple(TINY_VLM_MODELS),
    check_config=check_config,
    report=report,
)
