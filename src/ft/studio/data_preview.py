"""`ft data preview` for the page: the same examples (ft.commands.preview.encode: the chat template training uses,
the tokens that carry the loss), as text segments flagged trained or not, with each example's share of trained
tokens; for text-to-image data, thumbnails of the training images with their captions."""

import base64
import io

from ft.studio import forms

THUMBNAIL = 128  # pixels, the longer side


def preview(arguments: list[str], n: int) -> dict:
    from ft.commands import preview as data_preview

    n = max(1, min(int(n), 50))
    cfg = forms.compose(arguments)
    if cfg.task == "text_to_image":
        return images(cfg, n)
    tokenizer, shown, warnings, collapse = data_preview.encode(cfg, n)
    examples = []
    for ids, mask, _ in shown:
        trained = len(ids) if mask is None else sum(mask)
        examples.append(
            {
                "segments": [
                    {"text": text, "trained": flag}
                    for text, flag in data_preview.segments(tokenizer, ids, mask, collapse)
                ],
                "percent_trained": round(100 * trained / max(len(ids), 1), 1),
                "tokens": len(ids),
            }
        )
    return {"examples": examples, "warnings": warnings}


def images(cfg, n: int) -> dict:
    """The first n training images of a text-to-image config, as PNG data URLs, with their captions."""
    from ft.tasks.text_to_image import images as image_data

    examples = []
    for example in image_data.load(cfg.data, cfg.diffusion)[:n]:
        image = example.image if hasattr(example.image, "save") else image_data.open_image(example.image, "data")
        examples.append({"image": data_url(image, THUMBNAIL), "caption": example.caption})
    return {"examples": examples, "warnings": []}


def data_url(image, size: int | None = None) -> str:
    image = image.convert("RGB")
    if size:
        image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
