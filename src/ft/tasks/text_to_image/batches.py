"""task=text_to_image's dataset and batches: each item is an example's image tensors (at its aspect-ratio
bucket, ft.tasks.text_to_image.buckets) and caption (with DreamBooth's prior preservation, also a class
image's, cut to the same bucket), optionally encoded once up front (VAE latents, text embeddings); a
batch puts the instance rows first, then the class rows."""

import random

from ft.tasks.text_to_image import buckets, images


class Examples:
    """Map-style dataset: item i is example i's tensors (with prior preservation, also class image i). Its
    random crop and flip are drawn from (seed, epoch, i) alone: not from a global RNG, which Accelerate's
    data loader advances a batch ahead of training (so a checkpoint's saved state would already hold the
    next batch's draws, and a resumed run would cut that batch differently)."""

    def __init__(self, examples, class_examples, diffusion_cfg, size_factor: int, seed: int):
        self.examples, self.class_examples, self.d = examples, class_examples, diffusion_cfg
        self.seed, self.epoch = seed, 0  # the loop sets the epoch before iterating over it
        d = diffusion_cfg
        sizes = [(e.image.height, e.image.width) for e in examples]
        if d.bucketing and d.bucket_no_upscale:
            step = buckets.step_of(d.resolution, size_factor, d.bucket_step)
            self.bucket_of = [buckets.own(size, d.resolution, step) for size in sizes]
        else:
            square = [(d.resolution, d.resolution)]
            table = buckets.table(d.resolution, size_factor, d.min_bucket_size, d.max_bucket_size, d.bucket_step)
            self.bucket_of = [buckets.nearest(size, table if d.bucketing else square) for size in sizes]
        self.has_masks = any(e.mask is not None for e in examples)
        self.cached = None
        self.empty_caption = None  # the empty caption's (embeddings, pooled), for caption dropout when cached

    def __len__(self):
        return len(self.examples)

    def row(self, example, bucket, rng: random.Random) -> dict:
        d = self.d
        row = images.to_tensor(example.image, bucket, d.center_crop, d.random_flip, example.mask, rng)
        if self.has_masks and "mask" not in row:  # an image without a mask trains everywhere
            import torch

            row["mask"] = torch.ones(1, *bucket)
        return row | {"caption": example.caption}

    def __getitem__(self, i):
        if self.cached is not None:
            return self.cached[i]
        rng = random.Random(f"{self.seed}:{self.epoch}:{i}")
        rows = [self.row(self.examples[i], self.bucket_of[i], rng)]
        if self.class_examples:
            rows.append(self.row(self.class_examples[i % len(self.class_examples)], self.bucket_of[i], rng))
        return rows

    def cache(self, parts, device, latents: bool, embeddings: bool) -> None:
        """Encode every image (VAE latents, its crop and flip fixed now) and/or caption once."""
        import torch

        from ft.tasks.text_to_image import pipeline as diffusion

        cached = []
        with torch.no_grad():
            for i in range(len(self)):
                rows = self[i]
                for row in rows:
                    if latents:
                        row["latents"] = diffusion.latents_of(parts, row.pop("pixel_values")[None])[0]
                    if embeddings:
                        embeds, pooled = diffusion.encode_prompts(parts, [row["caption"]], device)
                        row["prompt_embeds"] = embeds[0]
                        row["pooled"] = None if pooled is None else pooled[0]
                cached.append(rows)
            if embeddings and self.d.caption_dropout:
                self.empty_caption = diffusion.encode_prompts(parts, [""], device)
        self.cached = cached


def collate(items: list[list[dict]]) -> dict:
    """The instance rows of a batch, then (with prior preservation) its class rows; all of one bucket."""
    import torch

    rows = [item[0] for item in items] + [item[1] for item in items if len(item) > 1]
    batch = {"caption": [row["caption"] for row in rows]}
    for key in ("pixel_values", "latents", "prompt_embeds", "pooled", "mask"):
        if rows[0].get(key) is not None:
            batch[key] = torch.stack([row[key] for row in rows])
    for key in ("original_size", "crop_top_left", "target_size"):
        batch[key] = [row[key] for row in rows]
    return batch
