"""Using a finished run from the page: a chat reply streamed as it is generated (ft chat's Session: the run's chat
template, system prompt and stop tokens; transformers' TextIteratorStreamer), from the trained adapter or, with
the adapter switched off, from the base model; and an image rendered by a text-to-image run (ft generate's code).
One run stays loaded (the last one asked), and one generation runs at a time."""

import tempfile
import threading
from pathlib import Path

from ft.errors import FtError

_lock = threading.Lock()
_loaded: dict = {}  # run dir -> ft.finish.generate.Session (the last one only)


def _session(run_dir: Path):
    from ft.finish import generate
    from ft.tasks.text_to_image import generate as generate_image
    from ft.tasks.vision_language import generate as generate_vision

    if generate_image.is_image_run(run_dir):
        raise FtError(f"{run_dir.name} is a text-to-image run: generate images from it instead")
    if generate_vision.is_vision_run(run_dir):
        raise FtError(f"{run_dir.name} is a vision-language run: chat with it with python -m ft chat run_dir=...")
    if run_dir not in _loaded:
        _loaded.clear()
        _loaded[run_dir] = generate.Session(run_dir)
    return _loaded[run_dir]


def _prompt(session, messages: list[dict]):
    """The conversation as the run was trained on it (its system prompt first, when it had one), or the last
    user message as is for a run trained on raw text."""
    turns = [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in messages]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise FtError("chat: the last message must be the user's, and not empty")
    if not session.chat:
        return turns[-1]["content"]
    if session.cfg.data.system_prompt and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": session.cfg.data.system_prompt})
    return turns


def reply(run_dir: Path, messages: list[dict], adapter: bool, max_new_tokens: int):
    """The reply's text chunks as they are generated (checked and loaded before the first chunk, so that a
    mistake is an HTTP 400, not a broken stream)."""
    import contextlib

    from transformers import TextIteratorStreamer

    from ft.finish import generate

    options = generate.ChatOptions(run_dir=str(run_dir), max_new_tokens=max(1, min(int(max_new_tokens), 1024)))
    with _lock:
        session = _session(run_dir)
        prompt = _prompt(session, messages)
        if not adapter and not hasattr(session.model, "disable_adapter"):
            raise FtError(f"{run_dir.name} holds a full model, not an adapter: there is no base to switch to")

    def chunks():
        # the lock is taken when the response starts streaming, so that a reply never started never holds it
        with _lock:
            streamer = TextIteratorStreamer(session.tokenizer, skip_prompt=True, skip_special_tokens=True)
            thread = threading.Thread(target=work, args=(streamer,), daemon=True)
            thread.start()
            yield from (text for text in streamer if text)
            thread.join()

    def work(streamer):
        try:
            with contextlib.nullcontext() if adapter else session.model.disable_adapter():
                session.generate(prompt, options, streamer=streamer)
        finally:
            streamer.end()

    return chunks()


def image(run_dir: Path, prompt: str) -> str:
    """A PNG data URL of `prompt` rendered by the text-to-image run (ft generate's rendering, the run's seed)."""
    from PIL import Image

    from ft.studio.data_preview import data_url
    from ft.tasks.text_to_image import generate as generate_image

    if not generate_image.is_image_run(run_dir):
        raise FtError(f"{run_dir.name} is not a text-to-image run: chat with it instead")
    with _lock, tempfile.TemporaryDirectory() as folder:
        path = generate_image.generate(run_dir, prompt, str(Path(folder) / "image.png"))
        with Image.open(path) as rendered:
            return data_url(rendered)
