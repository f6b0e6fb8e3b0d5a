"""`python -m ft data preview [FILE] [n=3] [recipe=NAME] [key=value ...]`: what training will see, before it runs.

The first n training examples of a recipe (or of a data file, which becomes data.source), rendered
through the chat template training will use, with the tokens that carry the loss marked (green on a
terminal, [[brackets]] otherwise), and each example's token count and share of trained tokens. It
loads the tokenizer only (the offline tiny model is built on first use), so it takes seconds. For task=vlm:
the processor, and each conversation through TRL's vision collator as training collates it, its images'
tokens shown (a run of one image token once, with its count) and its loss mask checked as training checks it.
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


def vision_examples(cfg, rows) -> tuple:
    """task=vlm: (the tokenizer, (input_ids, trained mask) per row, the warnings, the image token ids), each row
    through TRL's vision collator with the training chat template, as sft.py sets it up, and the loss mask
    checked as training checks it (masks.py; a failed check is a warning here, training would stop)."""
    from transformers import AutoConfig, GenerationConfig
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from ft.tasks.vision_language import masks, models, sft

    processor = models.load_processor(cfg.model, cfg.vision)
    warnings = [f"assistant masks: {sft.training_template(processor, cfg.model.name_or_path)}"]
    collator = DataCollatorForVisionLanguageModeling(
        processor, max_length=cfg.training.max_length, assistant_only_loss=True
    )
    path = models.resolve_path(cfg.model)
    images = masks.image_token_ids(processor, AutoConfig.from_pretrained(path, revision=cfg.model.revision))
    try:
        generation = GenerationConfig.from_pretrained(path, revision=cfg.model.revision)
    except OSError:  # a model without a generation_config.json: the tokenizer's EOS
        generation = None
    stops = masks.stop_token_ids(processor, generation)
    encoded = []
    for index, row in enumerate(rows):
        batch = collator([dict(row)])
        try:
            masks.check_example(row, batch, index, images, stops, processor.tokenizer)
        except FtError as error:
            warnings.append(f"{error} (training would stop here)")
        labels = batch["labels"][0].tolist()
        encoded.append((batch["input_ids"][0].tolist(), [int(label != masks.IGNORE) for label in labels]))
    return processor.tokenizer, encoded, warnings, images


def _decode(tokenizer, ids: list[int], collapse: set[int]) -> str:
    """The text of `ids`; a run of one image token (hundreds, for a real model) shown once, with its count."""
    parts, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (ids[i] in collapse or ids[i - 1] in collapse) and ids[i] != ids[i - 1]:
            text = tokenizer.decode(ids[start:i])
            if ids[start] in collapse and i - start > 1:
                text = f"{tokenizer.decode(ids[start : start + 1])}(x{i - start})"
            parts.append(text)
            start = i
    return "".join(parts)


def segments(tokenizer, ids: list[int], mask: list[int] | None, collapse: set[int] = frozenset()) -> list:
    """The example's text as (text, trained) runs; a run of one of the `collapse` ids (image tokens) shown once
    with its count."""
    mask = [1] * len(ids) if mask is None else mask
    runs, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            runs.append((_decode(tokenizer, ids[start:i], collapse), bool(mask[start])))
            start = i
    return runs


def show(tokenizer, ids: list[int], mask: list[int] | None, colour: bool, collapse: set[int] = frozenset()) -> str:
    """The example's text with each run of trained tokens marked."""
    return "".join(
        (f"{GREEN}{text}{RESET}" if colour else f"[[{text}]]") if trained else text
        for text, trained in segments(tokenizer, ids, mask, collapse)
    )


def encode(cfg, n: int) -> tuple:
    """(the tokenizer, (input_ids, trained mask or None, length before truncation) of the first n examples cut to
    training.max_length, the warnings, the image token ids to show once) of the composed config `cfg`."""
    from ft import data, models
    from ft.data import detect
    from ft.tasks.vision_language import data as vision_data
    from ft.tasks.vision_language import generate as vision_generate

    cfg = detect.resolved(cfg, announce=True)  # data.format=auto made concrete, as training does
    vision, collapse = vision_generate.is_vision_config(cfg), frozenset()
    if vision:  # conversations about images: the images' tokens shown, the processor's template
        (train, _), _ = vision_data.load(cfg.data)
        rows = train.select(range(min(n, len(train))))
        tokenizer, encoded, warnings, collapse = vision_examples(cfg, rows)
    elif cfg.data.format not in SFT_FORMATS:
        raise FtError(
            f"data preview shows supervised data ({', '.join(SFT_FORMATS)}), not data.format={cfg.data.format}"
        )
    else:
        train, _ = data.load(cfg.data)
        rows = train.select(range(min(n, len(train))))
        tokenizer = models.load_tokenizer(cfg.model)
        encoded, warnings = examples(cfg, tokenizer, rows)
    shown = []
    for index, (ids, mask) in enumerate(encoded):
        kept = ids[: cfg.training.max_length]
        shown.append((kept, None if mask is None else mask[: len(kept)], len(ids)))
        share = (len(kept) if mask is None else sum(mask[: len(kept)])) / max(len(kept), 1)
        masked = vision or (data.is_conversational(cfg.data.format) and cfg.training.assistant_only_loss)
        if masked and share in (0, 1):
            warnings.append(f"example {index} trains on {100 * share:.0f}% of its tokens: training would stop")
    return tokenizer, shown, warnings, collapse


def preview(arguments: list[str], out=None) -> list[float]:
    """Print the preview; returns each example's share of trained tokens."""
    from ft import config

    out = out or sys.stdout
    overrides, options = parse(arguments)
    cfg = config.compose(overrides)
    tokenizer, shown, warnings, collapse = encode(cfg, options.n)
    colour = out.isatty()
    shares = []
    for index, (ids, mask, length) in enumerate(shown):
        trained = len(ids) if mask is None else sum(mask)
        shares.append(trained / max(len(ids), 1))
        cut = f", truncated from {length} to training.max_length" if length > len(ids) else ""
        print(f"--- example {index}: {len(ids)} tokens, {100 * shares[-1]:.1f}% trained{cut}", file=out)
        print(show(tokenizer, ids, mask, colour, collapse), file=out)
    for warning in warnings:
        print(f"ft: {'' if warning.startswith('assistant masks') else 'warning: '}{warning}", file=out)
    return shares
