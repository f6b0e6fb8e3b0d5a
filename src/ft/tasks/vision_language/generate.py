"""`ft generate run_dir=... image=PATH prompt="..."` on a vision-language run: the run's base model with its
adapter answers a question about an image, through the chat template and processor saved with the run."""

import sys
from pathlib import Path

from ft.errors import FtError
from ft.run import rundir


def is_vision_run(run_dir) -> bool:
    """Whether run_dir holds a vision-language run (its config says task: vlm)."""
    config = Path(run_dir).expanduser() / rundir.CONFIG
    return config.is_file() and any(line.strip() == "task: vlm" for line in config.read_text().splitlines())


def open_image(path: str):
    """The image at `path`, opened and decoded, or a one-line refusal."""
    from PIL import Image

    file = Path(path).expanduser()
    if not file.is_file():
        raise FtError(f"image={path}: no such file")
    try:
        with Image.open(file) as opened:
            return opened.convert("RGB")
    except Exception as e:  # PIL's UnidentifiedImageError, OSError on a truncated file
        raise FtError(f"image={path} cannot be read as an image ({type(e).__name__})") from None


class Session:
    """A loaded vision-language run: its model with the adapter, its processor and config."""

    def __init__(self, run_dir):
        import torch
        from peft import PeftModel
        from transformers import AutoProcessor

        from ft.finish import loading
        from ft.tasks.vision_language import models

        self.run_dir = loading.check_run_dir(run_dir)
        self.cfg = loading.load_config(self.run_dir)
        self.processor = AutoProcessor.from_pretrained(self.run_dir)
        dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        base = models.load_model(self.cfg.model, dtype)
        self.model = PeftModel.from_pretrained(base, str(self.run_dir)).eval()
        if torch.cuda.is_available():
            self.model.to("cuda")
        print(f"ft: loaded {self.cfg.model.name_or_path} + adapter {self.run_dir}", file=sys.stderr, flush=True)

    def answer(self, turns: list[dict], images: list, max_new_tokens: int) -> str:
        from ft.tasks.vision_language import answers

        return answers.generate(self.model, self.processor, [turns], [images], max_new_tokens, self.model.device)[0]


def question(prompt: str, with_image: bool) -> dict:
    parts = [{"type": "image", "text": None}] if with_image else []
    return {"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}


def generate(options) -> str:
    if not options.prompt.strip():
        raise FtError('generate: prompt is empty: pass prompt="..."')
    images = [open_image(options.image)] if options.image else []
    session = Session(options.run_dir)
    reply = session.answer([question(options.prompt, bool(images))], images, options.max_new_tokens)
    print(reply, end="", flush=True)
    return reply
