"""Aspect-ratio buckets for task=text_to_image (kohya's scheme): instead of cropping every image square,
each trains at the bucket nearest its shape.

The table: (height, width) sizes, both multiples of the bucket step (diffusion.bucket_step; by default
resolution / 16: kohya's 64 at 1024 px), itself a multiple of the model's size factor (pixels per latent
cell: the VAE's 8 for SD / SDXL, times the patch size for transformer models), each side between
min_bucket_size and max_bucket_size, holding at most resolution^2 pixels, plus the square one (the
resolution, rounded down to the size factor). An image
goes to the bucket whose aspect ratio is nearest its own, is resized by the smallest scale that covers
the bucket and cropped (centre or random) by the remainder: what the rounding to the bucket leaves.
Like kohya's default, an image smaller than its bucket is upscaled to cover it, as the square crop always
did; images at least as large as their bucket are only scaled down. With diffusion.bucket_no_upscale
(kohya's --bucket_no_upscale) each image gets a bucket of its own instead: its size (scaled down to
resolution^2 pixels if larger) rounded down to the step, so that nothing is ever upscaled.

Batches: every batch holds images of one bucket. An epoch's order depends on (seed, epoch) alone (a
resumed run skips the batches it has trained on and sees the rest as an uninterrupted run would); with
one bucket it is the order of the square crop before buckets. Under DDP each group of num_processes
batches comes from one bucket, so every process trains on one shape at each step.
"""

import itertools
import math

Size = tuple[int, int]  # (height, width)


def table(
    resolution: int, factor: int, min_size: int | None = None, max_size: int | None = None, step: int | None = None
) -> list[Size]:
    """The buckets, from the widest to the tallest (kohya's make_buckets)."""
    area, square = resolution * resolution, max(factor, resolution // factor * factor)
    step = step_of(resolution, factor, step)

    def rounded(side: int) -> int:
        return max(step, side // step * step)

    low, high = rounded(min_size or resolution // 2), rounded(max_size or resolution * 2)
    sizes = {(square, square)}
    for width in range(low, high + 1, step):
        height = min(high, area // width // step * step)
        if height >= low:
            sizes |= {(height, width), (width, height)}
    return sorted(sizes, key=lambda size: (size[1] / size[0], size[0] * size[1]))


def step_of(resolution: int, factor: int, step: int | None = None) -> int:
    """Bucket sides are multiples of this: `step` (default resolution / 16) rounded to the size factor."""
    return max(factor, (step or resolution // 16) // factor * factor)


def own(size: Size, resolution: int, step: int) -> Size:
    """bucket_no_upscale's bucket of an image: its size, scaled down to resolution^2 pixels if larger,
    each side rounded down to the step (the image then only shrinks)."""
    height, width = size
    scale = min(1.0, math.sqrt(resolution * resolution / (height * width)))
    return max(step, int(height * scale) // step * step), max(step, int(width * scale) // step * step)


def nearest(size: Size, buckets: list[Size]) -> Size:
    """The bucket whose aspect ratio is nearest the image's (ties: the larger bucket)."""
    aspect = math.log(size[1] / size[0])
    return min(buckets, key=lambda b: (abs(math.log(b[1] / b[0]) - aspect), -b[0] * b[1]))


def cover(size: Size, bucket: Size) -> Size:
    """The image's size resized by the smallest scale that covers the bucket (the crop removes the rest)."""
    height, width = size
    scale = max(bucket[0] / height, bucket[1] / width)
    return max(bucket[0], round(height * scale)), max(bucket[1], round(width * scale))


def epoch_batches(bucket_of: list[Size], batch_size: int, num_processes: int, seed: int, epoch: int) -> list:
    """The epoch's batches of example indices, all processes' interleaved as Accelerate shards them (process r
    takes batches r, r + num_processes, ...): a permutation fixed by (seed, epoch), split by bucket in its
    order, cut into groups of batch_size * num_processes (a bucket's last group, under DDP, completed from
    the bucket's first examples so that every process gets a full batch of the same shape); with more
    than one bucket the groups are shuffled by the same generator."""
    import torch

    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(len(bucket_of), generator=generator).tolist()
    members: dict[Size, list[int]] = {}
    for i in order:
        members.setdefault(bucket_of[i], []).append(i)
    size, groups = batch_size * num_processes, []
    for indices in members.values():
        for start in range(0, len(indices), size):
            group = indices[start : start + size]
            if num_processes > 1 and len(group) < size:
                group += list(itertools.islice(itertools.cycle(indices), size - len(group)))
            groups.append(group)
    if len(members) > 1:
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
    return [group[r * batch_size : (r + 1) * batch_size] for group in groups for r in range(num_processes)]


def describe(bucket_of: list[Size]) -> list[str]:
    """The bucket table's lines: each bucket's size and how many examples it holds."""
    counts: dict[Size, int] = {}
    for bucket in bucket_of:
        counts[bucket] = counts.get(bucket, 0) + 1
    return [f"bucket {h}x{w} (height x width): {n} image(s)" for (h, w), n in sorted(counts.items())]
