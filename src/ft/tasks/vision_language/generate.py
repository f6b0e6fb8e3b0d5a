"""`ft generate run_dir=... image=PATH prompt="..."` on a vision-language run: the run's base model with its
adapter answers a question about an image, through the chat template and processor saved with the run."""

import json
import sys
from pathlib import Path

from ft.errors import FtError
from ft.run import rundir


def is_vision_run(run_dir) -> bool:
    """Whether run_dir holds a run of a task that trains a vision-language model (vlm, vlm_dpo, one's own)."""
    return rundir.task_head(run_dir) == "image_text_to_text"


def is_vision_config(cfg) -> bool:
    """Whether a composed config trains task=vlm (by its name, or its module path): its task reads `vision.*`."""
    from ft.config import registry
    from ft.tasks.vision_language.schema import VisionConfig

    return registry.get(cfg.task).section is VisionConfig


def open_image(path: str, label: str = "image="):
    """The image at `path`, opened and decoded, or a one-line refusal (`label`: how the message names it)."""
    from PIL import Image

    file = Path(path).expanduser()
    if not path or not file.is_file():
        raise FtError(f"{label}{path}: no such file")
    try:
        with Image.open(file) as opened:
            return opened.convert("RGB")
    except Exception as e:  # PIL's UnidentifiedImageError, OSError on a truncated file
        raise FtError(f"{label}{path} cannot be read as an image ({type(e).__name__})") from None


class Session:
    """A loaded vision-language run: its model with the adapter, its processor and config."""

    def __init__(self, run_dir):
        import torch
        from transformers import AutoProcessor

        from ft.finish import loading
        from ft.tasks.vision_language import finishing

        self.run_dir = loading.check_run_dir(run_dir)
        self.cfg = loading.load_config(self.run_dir)
        self.processor = AutoProcessor.from_pretrained(self.run_dir)
        self.model = finishing.load_model(self.run_dir, self.cfg)
        if torch.cuda.is_available() and not getattr(self.model, "is_loaded_in_4bit", False):
            self.model.to("cuda")
        print(f"ft: loaded {self.cfg.model.name_or_path} + adapter {self.run_dir}", file=sys.stderr, flush=True)

    def answer(self, turns: list[dict], images: list, options) -> str:
        """The reply to the conversation `turns` (typed parts), its image parts filled from `images`."""
        from ft.finish.generate import sampling
        from ft.tasks.vision_language import answers

        if options.show_prompt:
            [prompt] = answers.prompts([turns], [images])
            text = self.processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            print(f"ft: prompt {json.dumps(text)}", file=sys.stderr, flush=True)
        settings = sampling(options)
        return answers.generate(
            self.model, self.processor, [turns], [images], options.max_new_tokens, self.model.device, **settings
        )[0]


def question(prompt: str, images: int) -> dict:
    """A user turn: `images` image parts, then the text."""
    parts = [{"type": "image", "text": None} for _ in range(images)]
    return {"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}


def generate(options) -> str:
    if not options.prompt.strip():
        raise FtError('generate: prompt is empty: pass prompt="..."')
    images = [open_image(options.image)] if options.image else []
    session = Session(options.run_dir)
    reply = session.answer([question(options.prompt, len(images))], images, options)
    print(reply, end="", flush=True)
    return reply


IMAGE_COMMAND = "/image"


def chat(options, lines=None) -> list[dict]:
    """`ft chat` on a vision-language run: one user turn per line of `lines` (stdin by default) until EOF or
    `exit`; `/image PATH` attaches that image to the next user turn (an unreadable one is a line on stderr, and
    the chat goes on); `/reset` starts over. Returns the conversation."""
    from ft.finish.generate import EXIT_WORDS

    session = Session(options.run_dir)
    lines = sys.stdin if lines is None else lines
    interactive = lines is sys.stdin and sys.stdin.isatty()
    if interactive:
        print(
            f"ft: chat — `{IMAGE_COMMAND} PATH` to show an image, then a message; `/reset` to start over, `exit` or "
            "Ctrl-D to leave",
            file=sys.stderr,
        )
    history, shown, attached = [], [], []  # the turns, their images, the images for the next turn
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = lines.readline()
        if not line:
            break
        text = line.strip()
        if text.lower() in EXIT_WORDS:
            break
        if text == "/reset":
            history, shown, attached = [], [], []
            continue
        if text.split(maxsplit=1)[:1] == [IMAGE_COMMAND]:
            try:
                attached.append(open_image(text[len(IMAGE_COMMAND) :].strip(), label=f"{IMAGE_COMMAND} "))
            except FtError as error:
                print(f"ft: {error}; the chat goes on", file=sys.stderr, flush=True)
            continue
        if not text:
            continue
        turns = [*history, question(text, len(attached))]
        reply = session.answer(turns, shown + attached, options)
        print(reply, flush=True)
        history = [*turns, {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
        shown, attached = shown + attached, []
    return history
