"""A text-to-image base for training: its parts (tokenizers, text encoders, VAE, UNet, the training noise
scheduler) loaded from a diffusers pipeline directory or hub id, LoRA attached with PEFT, the diffusion
loss, and the trained LoRA saved in diffusers' format (`pytorch_lora_weights.safetensors`, which
`pipeline.load_lora_weights(run_dir)` reads). SD 1.5 / 2.1 have one text encoder; SDXL has two and
conditions the UNet on the image's size and crop too. Flux.1 and SD3 (a transformer trained with flow
matching) have their own parts and loss in ft.tasks.text_to_image.flow; loading, LoRA and saving here hand
them over where they differ.
"""

from dataclasses import dataclass
from pathlib import Path

from ft.tasks.text_to_image import losses
from ft.tasks.text_to_image.bases import MODEL_INDEX, pipeline_class_name, resolve_path  # noqa: F401 (also callers')
from ft.tasks.text_to_image.schema import UNET_ATTENTION

TEXT_ENCODER_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]  # CLIP's attention projections


@dataclass
class Parts:
    path: str
    xl: bool
    tokenizers: list
    text_encoders: list
    vae: object
    unet: object
    noise_scheduler: object  # DDPMScheduler: adds noise during training
    size_factor: int  # pixels per latent cell side: image sizes (aspect-ratio buckets) are multiples of it

    flow = False  # a flow-matching transformer (flow.FlowParts)

    @property
    def denoiser(self):
        return self.unet

    @property
    def trainable_text_encoders(self) -> list:
        return self.text_encoders

    def pipeline_class(self):
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        return StableDiffusionXLPipeline if self.xl else StableDiffusionPipeline


def load_parts(path: str, revision: str | None, prediction_type: str | None) -> Parts:
    """Every part frozen, in fp32 (the loop casts the frozen ones to the run's precision). For Flux / SD3,
    flow.load_parts."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    xl = "XL" in (pipeline_class_name(path, revision) or "")
    scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler", revision=revision)
    if prediction_type:  # e.g. SD 2.1 (768) is trained with v_prediction
        scheduler.register_to_config(prediction_type=prediction_type)
    names = ["", "_2"] if xl else [""]
    tokenizers = [AutoTokenizer.from_pretrained(path, subfolder=f"tokenizer{n}", revision=revision) for n in names]
    encoder_classes = [CLIPTextModel, CLIPTextModelWithProjection][: len(names)]
    text_encoders = [
        cls.from_pretrained(path, subfolder=f"text_encoder{n}", revision=revision)
        for cls, n in zip(encoder_classes, names)
    ]
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", revision=revision)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", revision=revision)
    for model in (vae, unet, *text_encoders):
        model.requires_grad_(False)
    return Parts(path, xl, tokenizers, text_encoders, vae, unet, scheduler, vae_scale_factor(vae))


def vae_scale_factor(vae) -> int:
    """How many pixels one latent cell spans per side (8 for SD / SDXL), as the pipelines compute it."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def add_lora(parts: Parts, peft_cfg, train_text_encoder: bool) -> None:
    """LoRA on the UNet's attention (peft.target_modules) and, if asked, on the text encoders' attention."""
    from peft import LoraConfig

    def config(targets):
        return LoraConfig(
            r=peft_cfg.r,
            lora_alpha=peft_cfg.lora_alpha,
            lora_dropout=peft_cfg.lora_dropout,
            init_lora_weights="gaussian" if peft_cfg.init_lora_weights is True else peft_cfg.init_lora_weights,
            target_modules=targets,
            use_rslora=peft_cfg.use_rslora,
            use_dora=peft_cfg.use_dora,
        )

    parts.denoiser.add_adapter(config(list(peft_cfg.target_modules or UNET_ATTENTION)))
    if train_text_encoder:
        for encoder in parts.trainable_text_encoders:
            encoder.add_adapter(config(TEXT_ENCODER_ATTENTION))


def trained_models(parts: Parts, train_text_encoder: bool) -> list:
    return [parts.denoiser, *(parts.trainable_text_encoders if train_text_encoder else [])]


def lora_layers(pipeline_class, denoiser, text_encoders: list | None) -> dict:
    """save_lora_weights' keyword arguments: each trained model's LoRA state dict and its LoRA config, named
    as the pipeline's LoRA loader names them (unet / transformer, text_encoder, text_encoder_2)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    names = pipeline_class._lora_loadable_modules
    layers = {}
    for name, model in zip(names, [denoiser, *(text_encoders or [])]):
        state = get_peft_model_state_dict(model)
        # the UNet pipelines' loaders take diffusers' key names; Flux's and SD3's take PEFT's as they are
        layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(state) if names[0] == "unet" else state
        layers[f"{name}_lora_adapter_metadata"] = model.peft_config["default"].to_dict()
    return layers


def save_lora(directory: Path, pipeline_class, denoiser, text_encoders: list | None, weight_name: str | None = None):
    layers = lora_layers(pipeline_class, denoiser, text_encoders)
    pipeline_class.save_lora_weights(str(directory), **layers, weight_name=weight_name, safe_serialization=True)


def load_lora_into(directory: Path, pipeline_class, denoiser, text_encoders: list | None) -> None:
    """A checkpoint's LoRA weights back into the models being trained (same adapter names)."""
    from diffusers.training_utils import _set_state_dict_into_text_encoder
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    state = pipeline_class.lora_state_dict(str(directory))
    state = state[0] if isinstance(state, tuple) else state  # (state, network alphas) from the UNet pipelines
    prefix = pipeline_class._lora_loadable_modules[0] + "."
    denoiser_state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    set_peft_model_state_dict(denoiser, convert_unet_state_dict_to_peft(denoiser_state), adapter_name="default")
    for prefix, encoder in zip(["text_encoder.", "text_encoder_2."], text_encoders or []):
        _set_state_dict_into_text_encoder(state, prefix, encoder)


def encode_prompts(parts: Parts, captions: list[str], device, encoders: list | None = None) -> tuple:
    """(prompt_embeds, pooled embeddings or None) as the pipelines compute them: SD takes the text encoder's
    last hidden states; SDXL both encoders' penultimate ones side by side, and the second's pooled output.
    `encoders`: the text encoders as Accelerate prepared them, when they are trained. Flux / SD3: flow's."""
    import torch

    if parts.flow:
        from ft.tasks.text_to_image import flow

        return flow.encode_prompts(parts, captions, device, encoders)
    states, pooled = [], None
    for tokenizer, encoder in zip(parts.tokenizers, encoders or parts.text_encoders):
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        if not parts.xl:
            return encoder(ids, return_dict=False)[0], None
        output = encoder(ids, output_hidden_states=True)
        pooled = output[0]  # the projected text embedding of CLIPTextModelWithProjection (the last encoder)
        states.append(output.hidden_states[-2])
    return torch.cat(states, dim=-1), pooled


def time_ids(original_sizes, crop_top_lefts, target_sizes, device, dtype):
    """SDXL's size/crop conditioning per image: original (h, w), crop (top, left), target (h, w): the
    image's bucket, the size it trains at."""
    import torch

    rows = [[*size, *crop, *target] for size, crop, target in zip(original_sizes, crop_top_lefts, target_sizes)]
    return torch.tensor(rows, device=device, dtype=dtype)


def parts_from_pipeline(pipe, path: str, diffusion_cfg=None) -> Parts:
    """A loaded pipeline's parts (e.g. after load_lora_weights), with a training noise scheduler of its config.
    Flux / SD3 (`diffusion_cfg`: their T5 length and Flux guidance): flow's."""
    from diffusers import DDPMScheduler

    from ft.tasks.text_to_image import flow

    if type(pipe).__name__ in (flow.FLUX, flow.SD3):
        return flow.parts_from_pipeline(pipe, path, diffusion_cfg)

    xl = hasattr(pipe, "text_encoder_2")
    encoders = [pipe.text_encoder, *([pipe.text_encoder_2] if xl else [])]
    tokenizers = [pipe.tokenizer, *([pipe.tokenizer_2] if xl else [])]
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return Parts(path, xl, tokenizers, encoders, pipe.vae, pipe.unet, scheduler, vae_scale_factor(pipe.vae))


def latent_mask(mask, latents):
    """A batch's pixel masks (B x 1 x H x W) averaged down to the latents' resolution."""
    import torch.nn.functional as F

    return F.interpolate(mask.to(latents.device, latents.dtype), size=latents.shape[-2:], mode="area")


def latents_of(parts: Parts, pixel_values, generator=None):
    """The VAE's latents of images in [-1, 1], shifted (Flux's, SD3's VAEs) and scaled as the denoiser
    expects them."""
    config = parts.vae.config
    latents = parts.vae.encode(pixel_values.to(parts.vae.device, parts.vae.dtype)).latent_dist.sample(generator)
    return (latents - (config.shift_factor or 0.0)) * config.scaling_factor


def diffusion_loss(
    parts: Parts, unet, latents, prompt_embeds, added, diffusion, generator=None, per_example=False, mask=None
):
    """The denoising loss of one batch: noise at random timesteps, predict the noise (epsilon) or the
    velocity (v_prediction), mean squared error, optionally Min-SNR weighted. `generator`: fixed noise and
    timesteps (the tests' fixed examples). `mask`: B x 1 x h x w weights in [0, 1] at latent resolution;
    each example's loss is then sum(mask * error) / sum(mask) over its elements."""
    import torch
    import torch.nn.functional as F
    from diffusers.training_utils import compute_snr

    scheduler = parts.noise_scheduler
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    if diffusion.noise_offset:
        noise += diffusion.noise_offset * torch.randn(
            (latents.shape[0], latents.shape[1], 1, 1), generator=generator, device=latents.device
        )
    steps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator, device=latents.device).long()
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = scheduler.config.prediction_type
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, prompt_embeds, added_cond_kwargs=added, return_dict=False)[0]
    loss = losses.per_example(F.mse_loss(prediction.float(), target.float(), reduction="none"), mask)
    if diffusion.snr_gamma is not None:  # Min-SNR: cap the weight of the easy (high-SNR) timesteps
        snr = compute_snr(scheduler, timesteps)
        weights = torch.clamp(snr, max=diffusion.snr_gamma) / (snr if prediction_type == "epsilon" else snr + 1)
        loss = loss * weights
    return loss if per_example else loss.mean()
