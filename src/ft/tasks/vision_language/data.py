"""Conversations about images, in the two shapes people keep them, made into TRL's vision form:

    messages   {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},
                             {"role": "assistant", "content": "..."}], "images": ["cat.png", ...]}
    llava      {"image": "cat.png" (or "images": [...]), "conversations": [{"from": "human", "value": "<image>\\n..."},
                                                                      {"from": "gpt", "value": "..."}]}

    TRL's form {"messages": [turns whose content is a list of {"type": "image"} / {"type": "text", "text"} parts],
                "images": [images, in the order of the image parts]}

A source is a .jsonl/.json/.parquet file or a directory of them (an image folder with metadata.jsonl);
an image is a path relative to the data file's directory (or absolute), or embedded ({"bytes": ...}, as
datasets' Image feature stores it). Every image is opened before training: a missing or unreadable file,
or a row whose placeholders and images differ in number, stops the run with a line naming the row.
"""

import io
from pathlib import Path

from ft.errors import FtError

PLACEHOLDER = "<image>"  # where a LLaVA-style turn puts its image
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SHAPES = ("messages", "llava")


def shape_of(columns: list[str]) -> str:
    """Which of the two shapes these columns are (data.format=auto)."""
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "llava"
    raise FtError(
        f"the data's columns {columns} are neither image conversations with 'messages' (+ 'images') nor "
        f"LLaVA-style rows with 'conversations' (+ 'image'): see docs/tasks/vision-language.md for the two shapes"
    )


def text_parts(text: str) -> list[dict]:
    """A LLaVA turn's text as parts: an image part at each <image> placeholder."""
    parts = []
    for index, piece in enumerate(text.split(PLACEHOLDER)):
        if index:
            parts.append({"type": "image", "text": None})
        piece = piece.strip("\n") if len(text.split(PLACEHOLDER)) > 1 else piece
        if piece.strip():
            parts.append({"type": "text", "text": piece})
    return parts


def turn_parts(content, where: str) -> list[dict]:
    """A messages turn's content (a string, or typed parts) as parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return text_parts(content) if PLACEHOLDER in content else [{"type": "text", "text": content}]
    parts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind in ("image", "image_url"):
            parts.append({"type": "image", "text": None})
        else:
            raise FtError(f"{where} part {index + 1} is of type '{kind}': images and text are the parts there are")
    return parts


def row_images(row: dict) -> list:
    """A row's images as given (paths, or embedded): 'images' (a list) or 'image' (one)."""
    images = row.get("images")
    if images is None and row.get("image") is not None:
        images = [row["image"]]
    if images is None:
        return []
    return list(images) if isinstance(images, (list, tuple)) else [images]


def convert_row(row: dict, shape: str, index: int, split: str) -> dict:
    """One row in TRL's vision form, its images still as given."""
    where = f"{split} row {index}"
    if shape == "llava":
        messages = []
        for turn in row["conversations"] or []:
            role = ROLES.get(str(turn.get("from", "")).lower())
            if role is None:
                raise FtError(f"{where}: turn 'from': '{turn.get('from')}' is not one of {', '.join(ROLES)}")
            messages.append({"role": role, "content": text_parts(turn.get("value") or "")})
    else:
        messages = [
            {"role": turn["role"], "content": turn_parts(turn.get("content"), f"{where} turn {number + 1}")}
            for number, turn in enumerate(row["messages"] or [])
        ]
    if not any(m["role"] == "assistant" for m in messages):
        raise FtError(f"{where} has no assistant turn: there is nothing to learn from it")
    images = row_images(row)
    check_placeholders(messages, images, where)
    return {"messages": messages, "images": images}


def check_placeholders(turns: list[dict], images: list, where: str) -> None:
    placeholders = sum(part["type"] == "image" for turn in turns for part in turn["content"])
    if placeholders != len(images):
        raise FtError(
            f"{where} has {placeholders} image placeholder(s) and {len(images)} image(s): give each image one "
            f"placeholder (an image part, or {PLACEHOLDER} in a LLaVA-style turn) and each placeholder one image"
        )


def convert_pair(row: dict, index: int, split: str) -> dict:
    """One image preference row in TRL's conversational vision form, its images still as given: the prompt
    as turns (a string: one user turn, an image part at each <image>), chosen / rejected as assistant turns."""
    where = f"{split} row {index}"
    prompt = row["prompt"]
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt or [])
    prompt = [
        {"role": turn["role"], "content": turn_parts(turn.get("content"), f"{where} prompt turn {number + 1}")}
        for number, turn in enumerate(turns)
    ]
    pair = {"prompt": prompt}
    for key in ("chosen", "rejected"):
        answer = row[key]
        answer = [{"role": "assistant", "content": answer}] if isinstance(answer, str) else list(answer or [])
        pair[key] = [{"role": t["role"], "content": turn_parts(t.get("content"), f"{where} {key}")} for t in answer]
        if not any(part["type"] == "text" and part["text"].strip() for t in pair[key] for part in t["content"]):
            raise FtError(f"{where}: its {key} answer is empty")
        if any(part["type"] == "image" for t in pair[key] for part in t["content"]):
            raise FtError(f"{where}: its {key} answer has an image: images belong in the prompt")
    images = row_images(row)
    check_placeholders(prompt, images, where)
    return {**pair, "images": images}


def resolve_image(image, base: Path, where: str):
    """A path (relative to `base`) or embedded image as the datasets Image feature takes it, after opening it
    once (a missing or unreadable image is refused here, not at step N)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict) and image.get("bytes"):
        source, shown, value = io.BytesIO(image["bytes"]), "its embedded image", {"bytes": image["bytes"], "path": None}
    else:
        name = image.get("path") if isinstance(image, dict) else image
        if not isinstance(name, str) or not name:
            raise FtError(f"{where}: an image is {image!r}, not a path or embedded bytes")
        path = Path(name).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise FtError(f"{where}: image {name} not found (looked for {path}): paths are relative to the data file")
        source, shown, value = path, f"image {name}", str(path)
    try:
        with Image.open(source) as opened:
            opened.load()
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError (truncated), ...
        raise FtError(f"{where}: {shown} cannot be read as an image ({type(e).__name__}): replace or drop it") from None
    return value


def prepare(raw, base: Path, split: str, pairs: bool = False):
    """A split of raw rows in TRL's vision form (preference rows with `pairs`), every image opened once; images
    load lazily (datasets' Image)."""
    from datasets import Dataset, Image, Sequence

    shape = pair_shape_of(raw) if pairs else shape_of(raw.column_names)
    rows = []
    for index, row in enumerate(raw):
        converted = convert_pair(row, index, split) if pairs else convert_row(row, shape, index, split)
        where = f"{split} row {index}"
        converted["images"] = [resolve_image(image, base, where) for image in converted["images"]]
        rows.append(converted)
    dataset = Dataset.from_list(rows)
    return dataset.cast_column("images", Sequence(Image())), shape


def pair_shape_of(raw) -> str:
    """Image preference rows: a prompt of turns, or a prompt string with <image> placeholders."""
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in raw.column_names]
    if missing:
        raise FtError(
            f"the data's columns {raw.column_names} lack {', '.join(missing)}: image preference rows have "
            f"'prompt', 'chosen', 'rejected' and 'images' (or 'image')"
        )
    return "prompt text" if len(raw) and isinstance(raw[0]["prompt"], str) else "prompt turns"


def load(data_cfg, pairs: bool = False):
    """(train, eval or None) in TRL's vision form, and where the data came from (its shape). `pairs`: image
    preference rows (prompt, chosen, rejected, images) instead of conversations."""
    from ft.data.sources import load_raw

    if data_cfg.source == "synthetic":
        rows = synthetic_pairs(data_cfg) if pairs else synthetic_shapes(data_cfg)
        return carve(rows, None, data_cfg), "synthetic shapes"
    raw = load_raw(data_cfg)
    source = Path(data_cfg.source).expanduser()
    base = source if source.is_dir() else source.parent
    for key in ("train_split", "eval_split"):
        split = getattr(data_cfg, key)
        if split is not None and split not in raw:
            raise FtError(f"data.{key}={split} is not a split of {data_cfg.source}; splits: {list(raw)}")
    train, shape = prepare(raw[data_cfg.train_split], base, "train", pairs)
    evaluation = prepare(raw[data_cfg.eval_split], base, "eval", pairs)[0] if data_cfg.eval_split else None
    return carve(train, evaluation, data_cfg), shape


def carve(train, evaluation, data_cfg):
    """data.eval_size rows carved out of train when there is no eval split, then data.max_examples."""
    if evaluation is None and data_cfg.eval_size > 0:
        size = int(data_cfg.eval_size) if data_cfg.eval_size >= 1 else data_cfg.eval_size
        if len(train) < 2 or (isinstance(size, int) and size >= len(train)):
            raise FtError(f"data.eval_size={size} leaves no training examples out of {len(train)}")
        split = train.train_test_split(test_size=size, seed=data_cfg.seed)
        train, evaluation = split["train"], split["test"]
    if data_cfg.max_examples is not None:
        train = train.select(range(min(data_cfg.max_examples, len(train))))
    return train, evaluation


COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 200, 20)}
FIGURES = ("circle", "square", "triangle")


def draw(colour: str, figure: str, rng, size: int = 64):
    """A white image with one shape of one colour, at a random place and size."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    extent = rng.randint(size // 3, size // 2)
    x, y = rng.randint(2, size - extent - 2), rng.randint(2, size - extent - 2)
    box, fill = (x, y, x + extent, y + extent), COLOURS[colour]
    pen = ImageDraw.Draw(image)
    if figure == "circle":
        pen.ellipse(box, fill=fill)
    elif figure == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x + extent // 2, y), (x, y + extent), (x + extent, y + extent)], fill=fill)
    return image


def shape_rows(count: int, seed: int) -> list[dict]:
    """Questions about drawn shapes: the colour or the shape, one word answers (held-out exact match)."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        colour, figure = rng.choice(list(COLOURS)), rng.choice(FIGURES)
        asks_colour = rng.random() < 0.5
        question = "What colour is the shape?" if asks_colour else "What shape is this?"
        image = io.BytesIO()
        draw(colour, figure, rng).save(image, format="PNG")
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
                    {"role": "assistant", "content": [{"type": "text", "text": colour if asks_colour else figure}]},
                ],
                "images": [{"bytes": image.getvalue(), "path": None}],
            }
        )
    return rows


def synthetic_shapes(data_cfg):
    """data.source=synthetic for task=vlm: data.synthetic.num_examples questions about drawn shapes."""
    from datasets import Dataset, Image, Sequence

    rows = shape_rows(data_cfg.synthetic.num_examples, data_cfg.synthetic.seed)
    return Dataset.from_list(rows).cast_column("images", Sequence(Image()))


def synthetic_pairs(data_cfg):
    """data.source=synthetic for task=vlm_dpo: the shapes' questions as preference pairs, chosen the right word,
    rejected a wrong word of the same kind (another colour, another shape): only the image tells them apart."""
    import random

    from datasets import Dataset, Image, Sequence

    rng = random.Random(data_cfg.synthetic.seed + 1)
    pairs = []
    for row in shape_rows(data_cfg.synthetic.num_examples, data_cfg.synthetic.seed):
        prompt, chosen = row["messages"][:-1], row["messages"][-1:]
        right = chosen[0]["content"][0]["text"]
        wrong = rng.choice([word for word in (COLOURS if right in COLOURS else FIGURES) if word != right])
        rejected = [{"role": "assistant", "content": [{"type": "text", "text": wrong}]}]
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "images": row["images"]})
    return Dataset.from_list(pairs).cast_column("images", Sequence(Image()))
