"""task=text_to_image's dataset and batches: each item is an example's image tensors and caption (with
DreamBooth's prior preservation, also a class image's), optionally encoded once up front (VAE latents,
text embeddings); a batch puts the instance rows first, then the class rows."""

from ft.tasks.text_to_image import images


class Examples:
    """Map-style dataset: item i is example i's tensors (with prior preservation, also class image i)."""

    def __init__(self, examples, class_examples, diffusion_cfg):
        self.examples, self.class_examples, self.d = examples, class_examples, diffusion_cfg
        self.cached = None

    def __len__(self):
        return len(self.examples)

    def row(self, example) -> dict:
        d = self.d
        return images.to_tensor(example.image, d.resolution, d.center_crop, d.random_flip) | {
            "caption": example.caption
        }

    def __getitem__(self, i):
        if self.cached is not None:
            return self.cached[i]
        rows = [self.row(self.examples[i])]
        if self.class_examples:
            rows.append(self.row(self.class_examples[i % len(self.class_examples)]))
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
        self.cached = cached


def collate(items: list[list[dict]]) -> dict:
    """The instance rows of a batch, then (with prior preservation) its class rows."""
    import torch

    rows = [item[0] for item in items] + [item[1] for item in items if len(item) > 1]
    batch = {"caption": [row["caption"] for row in rows]}
    for key in ("pixel_values", "latents", "prompt_embeds", "pooled"):
        if rows[0].get(key) is not None:
            batch[key] = torch.stack([row[key] for row in rows])
    batch["original_size"] = [row["original_size"] for row in rows]
    batch["crop_top_left"] = [row["crop_top_left"] for row in rows]
    return batch
