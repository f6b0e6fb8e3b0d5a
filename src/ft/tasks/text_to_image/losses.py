"""The per-example reduction both objectives share (SD's denoising loss in pipeline.py, Flux / SD3's
flow-matching loss in flow.py): the mean squared error over an example's elements, or, with a mask, its
mask-weighted mean."""


def per_example(error, mask=None):
    """`error`: B x C x h x w; `mask`: B x 1 x h x w weights in [0, 1] at latent resolution, or None. Each
    example's loss is sum(mask * error) / sum(mask) over its elements (the plain mean without a mask)."""
    if mask is None:
        return error.mean(dim=(1, 2, 3))
    weights = mask.to(error.dtype).expand_as(error)
    return (weights * error).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3)).clamp_min(1e-8)
