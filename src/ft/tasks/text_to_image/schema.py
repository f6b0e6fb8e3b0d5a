"""The config section of task=text_to_image (`diffusion.*`): diffusion LoRA on Stable Diffusion 1.5 / 2.1 and
SDXL, and flow-matching LoRA on Flux.1 and SD3 / 3.5, with DreamBooth. The batch size, learning rate, steps,
precision, optimizer and LoRA rank are the shared training / optim / peft keys."""

from dataclasses import dataclass
from typing import List, Optional

from ft.options import option

TINY_DIFFUSION_MODELS = [
    "tiny-sd",
    "tiny-sdxl",
    "tiny-flux",
    "tiny-flux-schnell",
    "tiny-sd3",
]  # model.name_or_path values of the offline tiny pipelines
UNET_ATTENTION = ["to_k", "to_q", "to_v", "to_out.0"]  # the UNet's attention projections (diffusers' examples)
WEIGHTING_SCHEMES = ["none", "sigma_sqrt", "logit_normal", "mode", "cosmap"]  # diffusers.training_utils' (SD3 paper)


@dataclass
class DiffusionConfig:
    """task=text_to_image: the UNet is trained to predict the noise (or velocity) added to an image's VAE
    latents, conditioned on its caption; a Flux / SD3 transformer to predict the flow from the latents to the
    noise (docs/tasks/text-to-image.md)."""

    resolution: int = option(
        512, ge=8, help="the side of the square training size; with bucketing, buckets hold about resolution^2 pixels"
    )
    bucketing: bool = option(
        True, help="aspect-ratio buckets: each image trains at the bucket nearest its shape; false: square crops"
    )
    min_bucket_size: Optional[int] = option(None, ge=8, help="shortest bucket side; null: resolution / 2")
    max_bucket_size: Optional[int] = option(None, ge=8, help="longest bucket side; null: resolution * 2")
    bucket_no_upscale: bool = option(
        False, help="each image its own bucket: its size rounded down to the step, never upscaled (kohya's)"
    )
    bucket_step: Optional[int] = option(
        None, ge=1, help="bucket sides are multiples of this (and of the model's size factor); null: resolution / 16"
    )
    center_crop: bool = option(False, help="crop the centre of each image; false: a random crop")
    random_flip: bool = option(False, help="flip images horizontally at random")
    image_column: str = option("image", help="a hub dataset's column holding the images")
    caption_column: str = option("text", help="the caption's key: in metadata.jsonl rows or a hub dataset's column")
    default_caption: Optional[str] = option(
        None, help="the caption of a folder's image without a .txt caption; null: such an image is refused"
    )
    trigger: Optional[str] = option(None, help='a trigger word put before every caption: "sks" -> "sks, <caption>"')
    caption_dropout: float = option(
        0.0, ge=0, le=1, help="probability of training an example on the empty caption (per example and step)"
    )
    prediction_type: Optional[str] = option(
        None, choices=["epsilon", "v_prediction"], help="what the UNet predicts; null: the model's scheduler's"
    )
    snr_gamma: Optional[float] = option(None, gt=0, help="Min-SNR loss weighting, e.g. 5.0; null: plain MSE")
    noise_offset: float = option(0.0, ge=0, help="offset noise strength (brighter / darker images); 0: off")
    ema_decay: Optional[float] = option(
        None, gt=0, lt=1, help="also keep an EMA of the LoRA weights, e.g. 0.999, saved as pytorch_lora_weights_ema"
    )
    save_kohya: bool = option(
        True, help="also save the LoRA in kohya's format (lora_kohya.safetensors: A1111, Forge, ComfyUI)"
    )
    train_text_encoder: bool = option(False, help="also train LoRA on the text encoder(s) attention")
    cache_latents: bool = option(False, help="encode every image with the VAE once before training")
    cache_text_embeddings: bool = option(False, help="encode every caption once before training (text encoder frozen)")
    validation_prompts: List[str] = option([], help="prompts rendered every validation_steps into samples/")
    validation_steps: int = option(100, ge=1, help="optimizer steps between two validation renders")
    num_inference_steps: int = option(25, ge=1, help="denoising steps of validation renders and `ft generate`")
    guidance_scale: float = option(
        7.5, ge=0, help="guidance of renders: classifier-free (SD, SDXL, SD3; <= 1: off), Flux-dev's embedded guidance"
    )
    # flow matching (Flux.1, SD3 / 3.5), as diffusers' Flux and SD3 LoRA scripts do it
    weighting_scheme: str = option(
        "none",
        choices=WEIGHTING_SCHEMES,
        help="Flux / SD3: noise levels drawn from a logit_normal or mode density, or the loss weighted by them "
        "(sigma_sqrt, cosmap); none: uniform levels, unweighted",
    )
    logit_mean: float = option(0.0, help="weighting_scheme=logit_normal: the mean of the normal before the sigmoid")
    logit_std: float = option(1.0, gt=0, help="weighting_scheme=logit_normal: its standard deviation")
    mode_scale: float = option(1.29, help="weighting_scheme=mode: how strongly mid noise levels are favoured")
    flux_guidance: Optional[float] = option(
        None,
        ge=0,
        help="Flux-dev (guidance-distilled): the guidance value its guidance embedding is given while training; "
        "null: 1.0. A model without one (schnell, SD3) refuses it",
    )
    max_sequence_length: int = option(
        512, ge=1, le=512, help="Flux / SD3: T5 tokens per caption, in training, renders and `ft generate`"
    )
    # DreamBooth: a few images of one subject, taught under a rare token
    instance_data_dir: Optional[str] = option(
        None, help="DreamBooth: a directory of the subject's images; synthetic: 8 offline ones"
    )
    instance_prompt: Optional[str] = option(None, help='DreamBooth: the prompt of every instance image, "a sks dog"')
    with_prior_preservation: bool = option(False, help="DreamBooth: also train on class images the base renders")
    class_data_dir: Optional[str] = option(None, help="DreamBooth: where class images are kept; null: the run dir")
    class_prompt: Optional[str] = option(None, help='DreamBooth: the subject\'s class, "a dog"')
    num_class_images: int = option(100, ge=1, help="DreamBooth: class images rendered by the base model")
    prior_loss_weight: float = option(1.0, ge=0, help="DreamBooth: weight of the class images' loss")
