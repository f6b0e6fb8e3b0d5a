"""Captioned images for task=text_to_image: where they come from, checked, and made into training tensors.

Sources (data.source):
    synthetic          coloured shapes on coloured backgrounds, captioned ("a red circle on a blue
                       background"), drawn in memory: offline, for the tiny recipes and the tests
    a directory        the datasets `imagefolder` layout: images + metadata.jsonl, one row per image
                       {"file_name": "0001.png", "text": "the caption"} (the caption key: diffusion.caption_column)
    a hub dataset id   with an image column and a caption column (diffusion.image_column / caption_column)
DreamBooth (diffusion.instance_data_dir): every image of a directory, all with diffusion.instance_prompt
(or captioned by a metadata.jsonl there); `synthetic`: 8 images of one purple triangle.

Every image is opened and checked before training starts: a missing, unreadable or caption-less one is
refused with one line naming the file.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

METADATA = "metadata.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")


@dataclass
class Example:
    image: object  # a PIL image, or a path opened when needed
    caption: str


def synthetic(num_examples: int, size: int, seed: int, subject: str | None = None) -> list[Example]:
    """Shapes of one colour on a background of another, each with the caption that says so. `subject`:
    DreamBooth's instance images instead, all one purple triangle, all captioned `subject`."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    examples = []
    for _ in range(num_examples):
        shape = "triangle" if subject else rng.choice(SHAPES)
        colour, background = ("purple", rng.choice(["white", "yellow"])) if subject else rng.sample(list(COLOURS), 2)
        image = Image.new("RGB", (size, size), COLOURS[background])
        draw = ImageDraw.Draw(image)
        margin = rng.randint(size // 8, size // 4)
        box = (margin, margin, size - margin, size - margin)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon(
                [(size // 2, margin), (margin, size - margin), (size - margin, size - margin)], COLOURS[colour]
            )
        examples.append(Example(image, subject or f"a {colour} {shape} on a {background} background"))
    return examples


def write_folder(examples: list[Example], folder: Path, caption_column: str = "text") -> Path:
    """An imagefolder directory of `examples`: PNGs and their metadata.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, example in enumerate(examples):
        example.image.save(folder / f"{i:04d}.png")
        rows.append({"file_name": f"{i:04d}.png", caption_column: example.caption})
    (folder / METADATA).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def open_image(path: Path, where: str):
    """The image at `path` in RGB, or one line saying why it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FtError(f"{where}: image {path} does not exist: add the file or remove its row")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise FtError(f"{where}: image {path} cannot be read ({type(e).__name__}): replace or remove it") from None


def captions(path: Path, caption_column: str) -> list[tuple[Path, str]]:
    """(image path, caption) of every row of an imagefolder's metadata.jsonl, checked without decoding any
    image: each listed file exists and has a caption, each image of the directory is listed."""
    metadata = path / METADATA
    if not metadata.is_file():
        raise FtError(
            f"data.source={path} has no {METADATA}: add one row per image, "
            f'{{"file_name": "0001.png", "{caption_column}": "a caption"}}'
        )
    rows = []
    for number, line in enumerate(metadata.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise FtError(f"{metadata} line {number} is not valid JSON: fix or remove it") from None
        name = row.get("file_name") if isinstance(row, dict) else None
        if not isinstance(name, str) or not name:
            raise FtError(f'{metadata} line {number} has no "file_name": name the image the row captions')
        caption = row.get(caption_column)
        if not isinstance(caption, str) or not caption.strip():
            raise FtError(
                f'{metadata} line {number}: image {path / name} has no caption ("{caption_column}"): caption it, '
                f"remove it, or set diffusion.caption_column to the caption's key"
            )
        if not (path / name).is_file():
            raise FtError(f"data.source={path}: image {path / name} does not exist: add the file or remove its row")
        rows.append((path / name, caption))
    listed = {image.name for image, _ in rows}
    for image in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in listed):
        raise FtError(f"data.source={path}: image {image} has no caption in {METADATA}: add a row for it or remove it")
    if not rows:
        raise FtError(f"data.source={path}: {METADATA} lists no images")
    return rows


def folder(path: Path, caption_column: str) -> list[Example]:
    """The images of an imagefolder directory with their captions from metadata.jsonl, each opened."""
    return [
        Example(open_image(image, f"data.source={path}"), caption) for image, caption in captions(path, caption_column)
    ]


def instance_folder(path: Path, prompt: str, key: str = "diffusion.instance_data_dir") -> list[Example]:
    """DreamBooth: every image of `path`, all captioned `prompt`."""
    if not path.is_dir():
        raise FtError(f"{key}={path}: no such directory")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FtError(f"{key}={path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [Example(open_image(p, key), prompt) for p in files]


def hub(source: str, split: str, image_column: str, caption_column: str) -> list[Example]:
    import datasets

    try:
        rows = datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many types for a missing / offline dataset
        raise FtError(f"cannot load the hub dataset data.source={source} ({type(e).__name__}): check the id") from None
    for column in (image_column, caption_column):
        if column not in rows.column_names:
            raise FtError(
                f"data.source={source} has no column '{column}' (columns: {', '.join(rows.column_names)}): "
                f"set diffusion.image_column / diffusion.caption_column"
            )
    examples = []
    for i, row in enumerate(rows):
        caption = row[caption_column]
        if not isinstance(caption, str) or not caption.strip():
            raise FtError(f"data.source={source} row {i} has no caption: remove it or choose another caption column")
        examples.append(Example(row[image_column].convert("RGB"), caption))
    return examples


def load(data_cfg, diffusion) -> list[Example]:
    """The training examples of the config: DreamBooth instance images, a folder, a hub dataset or synthetic."""
    if diffusion.instance_data_dir == "synthetic":  # the tiny DreamBooth recipe's offline subject
        return synthetic(8, diffusion.resolution, data_cfg.seed, subject=diffusion.instance_prompt)
    if diffusion.instance_data_dir:  # captioned by its own metadata.jsonl, if it has one
        instances = Path(diffusion.instance_data_dir).expanduser()
        if (instances / METADATA).is_file():
            return folder(instances, diffusion.caption_column)
        return instance_folder(instances, diffusion.instance_prompt)
    if data_cfg.source == "synthetic":
        examples = synthetic(data_cfg.synthetic.num_examples, diffusion.resolution, data_cfg.seed)
    elif Path(data_cfg.source).expanduser().is_dir():
        examples = folder(Path(data_cfg.source).expanduser(), diffusion.caption_column)
    else:
        examples = hub(data_cfg.source, data_cfg.train_split, diffusion.image_column, diffusion.caption_column)
    return examples[: data_cfg.max_examples] if data_cfg.max_examples else examples


def to_tensor(image, resolution: int, center_crop: bool, random_flip: bool) -> dict:
    """The image resized (shorter side to `resolution`), cropped square and maybe flipped, as a CHW tensor
    in [-1, 1], with SDXL's conditioning: the original size and the crop's top-left corner. The random
    crop and flip draw from Python's `random`, whose state Accelerate's checkpoints save."""
    import numpy as np
    import torch
    from PIL import Image

    original_size = (image.height, image.width)
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.BILINEAR)
    if center_crop:
        top, left = (image.height - resolution) // 2, (image.width - resolution) // 2
    else:
        top, left = random.randint(0, image.height - resolution), random.randint(0, image.width - resolution)
    image = image.crop((left, top, left + resolution, top + resolution))
    if random_flip and random.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    return {"pixel_values": pixels, "original_size": original_size, "crop_top_left": (top, left)}
