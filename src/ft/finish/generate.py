"""`ft generate` and `ft chat`: try a finished run.

The prompt goes through the chat template saved with the run's tokenizer — the template training
used — when the run was trained on conversations (with the data's system prompt, if it had one);
runs trained on raw text or prompt-completion pairs get the prompt as is. Output is streamed.
"""

import json
import sys
from dataclasses import dataclass

from ft import data
from ft.errors import FtError
from ft.finish import loading
from ft.options import option


@dataclass(kw_only=True)
class ChatOptions:
    run_dir: str = option(
        help="the run directory `ft train` printed, or a merged / full model directory", metavar="DIR"
    )
    max_new_tokens: int = option(128, help="generate at most this many tokens per reply")
    temperature: float | None = option(None, help="sampling temperature; giving it turns sampling on")
    top_p: float | None = option(None, help="nucleus sampling probability; giving it turns sampling on")
    do_sample: bool | None = option(
        None, help="sample (true) or decode greedily (false); unset: sample if temperature or top_p is given"
    )
    show_prompt: bool = option(False, help="print the rendered prompt (JSON-quoted) to stderr")


@dataclass(kw_only=True)
class GenerateOptions(ChatOptions):
    prompt: str = option(help="the user message, sent through the run's chat template", metavar='"..."')
    image: str | None = option(
        None,
        help="vision-language runs: the image the prompt asks about; text-to-image runs: the PNG to write (unset: "
        "RUN_DIR/generated-N.png)",
    )


def sampling(options: ChatOptions) -> dict:
    """model.generate()'s sampling settings: sampling when asked (or when a temperature or top_p is given),
    else greedy, without the sampling settings a base model's generation_config may carry."""
    sample = (
        options.do_sample
        if options.do_sample is not None
        else (options.temperature is not None or options.top_p is not None)
    )
    if sample:
        return dict(do_sample=True, temperature=options.temperature or 1.0, top_p=options.top_p or 1.0)
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None)


class Session:
    """A loaded run: model, tokenizer and the config it was trained with."""

    def __init__(self, run_dir):
        self.run_dir = loading.check_run_dir(run_dir)
        self.cfg = loading.load_config(self.run_dir)
        self.tokenizer = loading.load_tokenizer(self.run_dir)
        self.model = loading.load_model(self.run_dir, self.cfg)
        self.chat = data.is_conversational(self.cfg.data.format) and self.tokenizer.chat_template is not None
        what = (
            f"{loading.base_model_path(self.cfg)} + adapter {self.run_dir}"
            if loading.is_adapter(self.run_dir)
            else str(self.run_dir)
        )
        print(f"ft: loaded {what} on {self.model.device}", file=sys.stderr, flush=True)

    def conversation(self, history: list[dict], user_text: str) -> list[dict]:
        system = (
            [{"role": "system", "content": self.cfg.data.system_prompt}]
            if self.cfg.data.system_prompt and not history
            else []
        )
        return history + system + [{"role": "user", "content": user_text}]

    def render(self, messages: list[dict] | str) -> str:
        """The exact text the model is prompted with."""
        if isinstance(messages, str):
            return messages
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, messages: list[dict] | str, options: ChatOptions, stream: bool = True, streamer=None) -> str:
        """The reply, streamed to stdout (or to `streamer`, e.g. a TextIteratorStreamer) as it is generated."""
        import torch
        from transformers import TextStreamer

        text = self.render(messages)
        if options.show_prompt:
            print(f"ft: prompt {json.dumps(text)}", file=sys.stderr, flush=True)
        # A chat template already writes the special tokens it wants (BOS included).
        inputs = self.tokenizer(text, add_special_tokens=not isinstance(messages, list), return_tensors="pt").to(
            self.model.device
        )
        kwargs = dict(
            max_new_tokens=options.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._stop_ids(),
            **sampling(options),
        )
        if streamer is None and stream:
            streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with torch.no_grad():
            output = self.model.generate(**inputs, streamer=streamer, **kwargs)
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def _stop_ids(self) -> list[int]:
        """The template's end-of-turn token and the model's own EOS: training taught the former."""
        ids = self.model.generation_config.eos_token_id
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        return [self.tokenizer.eos_token_id] + [i for i in ids if i != self.tokenizer.eos_token_id]


def generate(options: GenerateOptions) -> str:
    if not options.prompt.strip():
        raise FtError('generate: prompt is empty: pass prompt="..."')
    if options.image:
        raise FtError(
            f"image={options.image}: run_dir={options.run_dir} is a text-only language model, which cannot see "
            f"images: train a vision-language model (task=vlm, recipe=tiny_vlm_gemma3) to ask about images"
        )
    session = Session(options.run_dir)
    messages = session.conversation([], options.prompt) if session.chat else options.prompt
    return session.generate(messages, options)


EXIT_WORDS = ("exit", "quit", "/exit", "/quit")


def chat(options: ChatOptions, lines=None) -> list[dict]:
    """Read user turns line by line from `lines` (a text stream, stdin by default) until EOF or `exit`;
    `/reset` starts over. Returns the conversation."""
    session = Session(options.run_dir)
    if not session.chat:
        raise FtError(
            f"chat needs a run trained on conversations; {options.run_dir} was trained on "
            f"data.format={session.cfg.data.format}: use `ft generate`"
        )
    lines = sys.stdin if lines is None else lines
    interactive = lines is sys.stdin and sys.stdin.isatty()
    if interactive:
        print("ft: chat — type a message, `/reset` to start over, `exit` or Ctrl-D to leave", file=sys.stderr)
    history: list[dict] = []
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
            history = []
            continue
        if text.split(maxsplit=1)[:1] == ["/image"]:
            print(
                f"ft: {options.run_dir} is a text-only language model, which cannot see images: the chat goes on "
                "without it (task=vlm trains a vision-language model)",
                file=sys.stderr,
                flush=True,
            )
            continue
        if not text:
            continue
        messages = session.conversation(history, text)
        reply = session.generate(messages, options)
        history = messages + [{"role": "assistant", "content": reply}]
    return history
