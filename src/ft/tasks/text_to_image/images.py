"""Captioned images for task=text_to_image: where they come from, checked, and made into training tensors.

Sources (data.source):
    synthetic          coloured shapes on coloured backgrounds, captioned ("a red circle on a blue
                       background"), drawn in memory: offline, for the tiny recipes and the tests
    a directory        either the datasets `imagefolder` layout: images + metadata.jsonl, one row per image
                       {"file_name": "0001.png", "text": "the caption"} (the caption key: diffusion.caption_column);
                       or, without metadata.jsonl, kohya's: each image with a same-named .txt caption beside it
                       (0001.png + 0001.txt; diffusion.default_caption for images without one), directly in the
                       directory or in subfolders named `<repeats>_<name>` ("10_sks dog": each image 10 times
                       per epoch; another name: once)
    a hub dataset id   with an image column and a caption column (diffusion.image_column / caption_column)
DreamBooth (diffusion.instance_data_dir): every image of a directory, all with diffusion.instance_prompt
unless a .txt beside it captions it (or captioned by a metadata.jsonl there); `synthetic`: 8 images of
one purple triangle.

A mask, optional, for the masked loss: `<image name>.mask.png` beside an image (in either layout), a
greyscale image of the same size: white trains, black is ignored, grey weighs in between.

Every image is opened and checked before training starts: a missing, unreadable or caption-less one, or
a caption without its image, is refused with one line naming the file.
"""

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

METADATA = "metadata.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
CAPTION_SUFFIX = ".txt"  # kohya's sidecar caption
MASK_SUFFIX = ".mask.png"  # an image's loss mask beside it
REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")  # kohya's "10_sks dog": its images 10 times per epoch
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
    mask: object = None  # a greyscale PIL image of the image's size, or None: every pixel trains


@dataclass
class Listed:
    """An image of a folder, found and captioned but not decoded yet."""

    image: Path
    caption: str
    repeats: int = 1
    mask: Path | None = None


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.lower().endswith(MASK_SUFFIX)


def mask_path(image: Path) -> Path | None:
    mask = image.with_name(image.stem + MASK_SUFFIX)
    return mask if mask.is_file() else None


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


def open_mask(path: Path, size: tuple[int, int], where: str):
    """The mask at `path` in greyscale; it must have its image's (width, height)."""
    mask = open_image(path, where).convert("L")
    if mask.size != size:
        raise FtError(
            f"{where}: mask {path} is {mask.size[0]}x{mask.size[1]}, its image {size[0]}x{size[1]}: "
            f"make the mask the image's size"
        )
    return mask


def listing(path: Path, caption_column: str, default_caption: str | None, key: str = "data.source") -> list[Listed]:
    """A folder's captioned images, checked without decoding any: from its metadata.jsonl if it has one,
    else from the .txt captions beside the images (kohya's layout, with `<repeats>_<name>` subfolders)."""
    if (path / METADATA).is_file():
        return [Listed(image, caption, 1, mask_path(image)) for image, caption in captions(path, caption_column)]
    return sidecar(path, default_caption, key)


def sidecar(path: Path, default_caption: str | None, key: str = "data.source") -> list[Listed]:
    """kohya's layout: every image of `path` and of its subfolders, captioned by the same-named .txt beside it
    (else `default_caption`); a subfolder `<N>_<name>` repeats its images N times per epoch."""
    if not path.is_dir():
        raise FtError(f"{key}={path}: no such directory")
    folders = [(path, 1)]
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = REPEATS_FOLDER.match(sub.name)
        folders.append((sub, int(match.group(1)) if match else 1))
    listed = []
    for folder, repeats in folders:
        files = sorted(folder.iterdir())
        for text in (p for p in files if p.suffix.lower() == CAPTION_SUFFIX):
            if not any(is_image(p) and p.stem == text.stem for p in files):
                raise FtError(
                    f"{key}={path}: caption {text} has no image beside it ({', '.join(IMAGE_SUFFIXES)}): "
                    f"add the image or remove the caption"
                )
        for image in (p for p in files if is_image(p)):
            text = image.with_suffix(CAPTION_SUFFIX)
            caption = text.read_text().strip() if text.is_file() else ""
            if not caption and default_caption is None:
                raise FtError(
                    f"{key}={path}: image {image} has no caption ({text.name} is missing or empty): "
                    f"write it, remove the image, or set diffusion.default_caption"
                )
            listed.append(Listed(image, caption or default_caption, repeats, mask_path(image)))
    if not listed:
        raise FtError(
            f"{key}={path} holds no images: add images ({', '.join(IMAGE_SUFFIXES)}) with same-named .txt captions, "
            f'or a {METADATA} with one row per image, {{"file_name": "0001.png", "text": "a caption"}}'
        )
    return listed


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
    for image in sorted(p for p in path.iterdir() if is_image(p) and p.name not in listed):
        raise FtError(f"data.source={path}: image {image} has no caption in {METADATA}: add a row for it or remove it")
    if not rows:
        raise FtError(f"data.source={path}: {METADATA} lists no images")
    return rows


def examples_of(listed: list[Listed], where: str) -> list[Example]:
    """The listed images opened (each repeated as its folder says), with their masks."""
    examples = []
    for item in listed:
        image = open_image(item.image, where)
        mask = open_mask(item.mask, image.size, where) if item.mask else None
        examples += [Example(image, item.caption, mask)] * item.repeats
    return examples


def folder(path: Path, caption_column: str, default_caption: str | None = None) -> list[Example]:
    """The images of a directory with their captions (metadata.jsonl or .txt files), each opened."""
    where = f"data.source={path}"
    return examples_of(listing(path, caption_column, default_caption), where)


def instance_folder(path: Path, prompt: str, key: str = "diffusion.instance_data_dir") -> list[Example]:
    """DreamBooth: every image of `path`, captioned `prompt` unless a .txt beside it says otherwise."""
    return examples_of(sidecar(path, prompt, key), key)


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
    return with_trigger(_examples(data_cfg, diffusion), diffusion.trigger)


def _examples(data_cfg, diffusion) -> list[Example]:
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
        examples = folder(Path(data_cfg.source).expanduser(), diffusion.caption_column, diffusion.default_caption)
    else:
        examples = hub(data_cfg.source, data_cfg.train_split, diffusion.image_column, diffusion.caption_column)
    return examples[: data_cfg.max_examples] if data_cfg.max_examples else examples


def with_trigger(examples: list[Example], trigger: str | None) -> list[Example]:
    """Each caption behind the trigger word: "sks" + "a dog" -> "sks, a dog"."""
    if not trigger:
        return examples
    return [Example(e.image, f"{trigger}, {e.caption}", e.mask) for e in examples]


def to_tensor(image, size, center_crop: bool, random_flip: bool, mask=None, rng=random) -> dict:
    """The image resized to cover `size` (a bucket's (height, width), or an int: a square) by the smallest
    scale, cropped to it and maybe flipped, as a CHW tensor in [-1, 1], with SDXL's conditioning: the
    original size, the crop's top-left corner, the target size. `mask`: cut and flipped the same way, as a
    1 x H x W tensor in [0, 1]. The random crop and flip draw from `rng` (a random.Random)."""
    import numpy as np
    import torch
    from PIL import Image

    from ft.tasks.text_to_image import buckets

    height, width = (size, size) if isinstance(size, int) else size
    original_size = (image.height, image.width)
    resized_h, resized_w = buckets.cover(original_size, (height, width))
    if center_crop:
        top, left = (resized_h - height) // 2, (resized_w - width) // 2
    else:
        top, left = rng.randint(0, resized_h - height), rng.randint(0, resized_w - width)
    flip = random_flip and rng.random() < 0.5

    def cut(picture, resample):
        picture = picture.resize((resized_w, resized_h), resample).crop((left, top, left + width, top + height))
        return picture.transpose(Image.FLIP_LEFT_RIGHT) if flip else picture

    pixels = torch.from_numpy(np.asarray(cut(image, Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    row = {
        "pixel_values": pixels,
        "original_size": original_size,
        "crop_top_left": (top, left),
        "target_size": (height, width),
    }
    if mask is not None:
        row["mask"] = torch.from_numpy(np.asarray(cut(mask, Image.BILINEAR), dtype=np.float32) / 255.0)[None]
    return row
