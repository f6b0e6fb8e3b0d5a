"""`python -m ft data preview [FILE] [n=3] [recipe=NAME] [key=value ...]`: what training will see, before it runs.

The first n training examples of a recipe (or of a data file, which becomes data.source), rendered
through the chat template training will use, with the tokens that carry the loss marked (green on a
terminal, [[brackets]] otherwise), and each example's token count and share of trained tokens. It
loads the tokenizer only (the offline tiny model is built on first use), so it takes seconds.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from ft.config.data_schema import SFT_FORMATS
from ft.errors import FtError
from ft.options import option, split_pairs

GREEN, RESET = "\033[32m", "\033[0m"


@dataclass(kw_only=True)
class PreviewOptions:
    n: int = option(3, help="how many training examples to show", ge=1)


def parse(arguments: list[str]) -> tuple[list[str], PreviewOptions]:
    """(config overrides, the preview's options) from `[FILE] [n=N] [key=value ...]`: a FILE becomes data.source."""
    options, rest = split_pairs(PreviewOptions, arguments, "data preview")
    overrides = []
    for argument in rest:
        if "=" not in argument:
            if not Path(argument).expanduser().exists():
                raise FtError(f"data preview: {argument} is neither key=value nor an existing data file")
            argument = f"data.source={argument}"
        overrides.append(argument)
    return overrides, options


def examples(cfg, tokenizer, rows) -> tuple[list[tuple[list[int], list[int]]], list[str]]:
    """(input_ids, trained mask) per row, as training will compute them, and the warnings."""
    from ft import data
    from ft.data import templates

    warnings = []
    if data.is_conversational(cfg.data.format):
        if not cfg.training.assistant_only_loss:
            return [(_chat_ids(tokenizer, r["messages"]), None) for r in rows], warnings
        method = templates.choose(tokenizer, templates.model_label(cfg))
        warnings.append(f"assistant masks: {method}")
        templates.check_rows(rows, tokenizer, "train")
        out = [templates.tokenize(tokenizer, r, method) for r in rows]
        if method != templates.PREFIX:
            from trl.chat_template_utils import is_chat_template_stop_token_trained

            if not is_chat_template_stop_token_trained(tokenizer):
                warnings.append("the end-of-turn token is outside the assistant mask: the model may never stop")
        return [(o["input_ids"], o["assistant_masks"]) for o in out], warnings
    if "prompt" in rows.column_names:  # prompt-completion: the completion (with EOS) is trained
        result = []
        for r in rows:
            prompt = tokenizer(r["prompt"])["input_ids"]
            ids = tokenizer(r["prompt"] + r["completion"] + tokenizer.eos_token)["input_ids"]
            trained = cfg.training.completion_only_loss is not False
            result.append((ids, [0 if trained and i < len(prompt) else 1 for i in range(len(ids))]))
        return result, warnings
    return [(tokenizer(r["text"] + tokenizer.eos_token)["input_ids"], None) for r in rows], warnings


def _chat_ids(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]


def show(tokenizer, ids: list[int], mask: list[int] | None, colour: bool) -> str:
    """The example's text with each run of trained tokens marked."""
    mask = [1] * len(ids) if mask is None else mask
    parts, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            text = tokenizer.decode(ids[start:i])
            if mask[start]:
                text = f"{GREEN}{text}{RESET}" if colour else f"[[{text}]]"
            parts.append(text)
            start = i
    return "".join(parts)


def preview(arguments: list[str], out=None) -> list[float]:
    """Print the preview; returns each example's share of trained tokens."""
    from ft import config, data, models
    from ft.data import detect

    out = out or sys.stdout
    overrides, options = parse(arguments)
    cfg = config.compose(overrides)
    cfg = detect.resolved(cfg, announce=True)  # data.format=auto made concrete, as training does
    if cfg.data.format not in SFT_FORMATS:
        raise FtError(
            f"data preview shows supervised data ({', '.join(SFT_FORMATS)}), not data.format={cfg.data.format}"
        )
    train, _ = data.load(cfg.data)
    rows = train.select(range(min(options.n, len(train))))
    tokenizer = models.load_tokenizer(cfg.model)
    encoded, warnings = examples(cfg, tokenizer, rows)
    colour = out.isatty()
    shares = []
    for index, (ids, mask) in enumerate(encoded):
        kept = ids[: cfg.training.max_length]
        trained = len(kept) if mask is None else sum(mask[: len(kept)])
        shares.append(trained / max(len(kept), 1))
        cut = f", truncated from {len(ids)} to training.max_length" if len(ids) > len(kept) else ""
        print(f"--- example {index}: {len(kept)} tokens, {100 * shares[-1]:.1f}% trained{cut}", file=out)
        print(show(tokenizer, kept, None if mask is None else mask[: len(kept)], colour), file=out)
        if data.is_conversational(cfg.data.format) and cfg.training.assistant_only_loss and shares[-1] in (0, 1):
            warnings.append(f"example {index} trains on {100 * shares[-1]:.0f}% of its tokens: training would stop")
    for warning in warnings:
        print(f"ft: {'' if warning.startswith('assistant masks') else 'warning: '}{warning}", file=out)
    return shares
