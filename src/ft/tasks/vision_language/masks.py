"""Which tokens of an image conversation carry the loss, checked on every example before the first step.

TRL's vision collator renders each batch with the processor's chat template and keeps the loss on the
tokens its `{% generation %}` markers enclose. What the peers' users find only from a strange loss curve
is checked here, per example, on the collator's own output: no image token, padding or user turn is
trained; each trained span is exactly an assistant turn's text and ends with a token generation stops on,
so the model learns to answer and to stop (whitespace after that token, as Gemma's template writes, may be
trained too).
"""

from ft.errors import FtError

IGNORE = -100


def image_token_ids(processor, model_config) -> set[int]:
    """The ids that stand for images in the text: the config's image token and the tokenizer's special
    tokens that name an image or the vision stream (Qwen's <|vision_start|>, Gemma's <start_of_image>)."""
    tokenizer = processor.tokenizer
    keys = ("image_token_id", "image_token_index", "boi_token_id", "eoi_token_id")
    ids = {getattr(model_config, key, None) for key in keys}
    for token, token_id in tokenizer.get_added_vocab().items():
        if any(word in token.lower() for word in ("image", "vision", "img")):
            ids.add(token_id)
    return {i for i in ids if isinstance(i, int)}


def stop_token_ids(processor, generation_config) -> set[int]:
    """What generation stops on: the generation config's eos ids and the tokenizer's EOS."""
    ids = getattr(generation_config, "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if processor.tokenizer.eos_token_id is not None:
        ids.add(processor.tokenizer.eos_token_id)
    return ids


def assistant_texts(messages) -> list[str]:
    return [
        "".join(part["text"] or "" for part in m["content"] if part["type"] == "text")
        for m in messages
        if m["role"] == "assistant"
    ]


def spans(labels) -> list[tuple[int, int]]:
    """(start, end) of each run of trained positions."""
    found, start = [], None
    for position, label in enumerate([*labels, IGNORE]):
        if label != IGNORE and start is None:
            start = position
        elif label == IGNORE and start is not None:
            found.append((start, position))
            start = None
    return found


def check_example(row: dict, batch: dict, index: int, images: set[int], stops: set[int], tokenizer) -> float:
    """One collated example's labels against its conversation; returns its share of trained tokens."""
    input_ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    attention = batch["attention_mask"][0].tolist()
    trained = [i for i, label in enumerate(labels) if label != IGNORE]
    where = f"train row {index}"
    if not trained:
        raise FtError(
            f"{where} trains on no token: the chat template marks no assistant tokens (are the assistant turns "
            f"empty, or cut off by training.max_length?)"
        )
    if any(input_ids[i] in images for i in trained):
        raise FtError(f"{where} trains on image tokens: the template's {{% generation %}} markers enclose an image")
    if any(attention[i] == 0 for i in trained):
        raise FtError(f"{where} trains on padding")
    expected = assistant_texts(row["messages"])
    found = spans(labels)
    decoded = [tokenizer.decode(input_ids[s:e], skip_special_tokens=True).strip() for s, e in found]
    if decoded != [text.strip() for text in expected]:
        raise FtError(
            f"{where}: the trained tokens are {decoded!r}, not its assistant turns {expected!r}: the chat template's "
            f"{{% generation %}} markers must enclose each assistant turn and nothing else (set model.chat_template)"
        )
    for (start, end), text in zip(found, expected):
        stop = next((i for i in range(end - 1, start - 1, -1) if input_ids[i] in stops), None)
        if stop is None or tokenizer.decode(input_ids[stop + 1 : end]).strip():  # only whitespace may follow it
            raise FtError(
                f"{where}: the assistant turn {text.strip()[:40]!r} does not end with a token generation stops on "
                f"({tokenizer.convert_ids_to_tokens(input_ids[end - 1])!r} is trained last): the model would not "
                f"learn to stop; its chat template must put the end-of-turn token inside the {{% generation %}} block"
            )
    return len(trained) / sum(attention)


def check(dataset, collator, processor, model, split: str = "train") -> float:
    """Every example of `dataset` through the trainer's collator, one at a time; the mean trained share."""
    images = image_token_ids(processor, model.config)
    stops = stop_token_ids(processor, getattr(model, "generation_config", None))
    shares = []
    if split and len(dataset) > 1000:  # each one's images are processed: minutes on a large dataset
        print(f"ft: checking the loss mask of {len(dataset)} {split} examples...", flush=True)
    for index in range(len(dataset)):
        row = dataset[index]
        batch = collator([dict(row)])
        shares.append(check_example(row, batch, index, images, stops, processor.tokenizer))
    if split:
        print(
            f"ft: loss on assistant tokens only, checked on {len(shares)} {split} examples: {100 * min(shares):.0f}-"
            f"{100 * max(shares):.0f}% of each example's tokens trained",
            flush=True,
        )
    return sum(shares) / len(shares)
