"""The flow-matching text-to-image models, Flux.1 (dev, schnell) and Stable Diffusion 3 / 3.5: their parts
loaded from a diffusers pipeline, the captions encoded as the pipelines do it, and the rectified-flow loss
of diffusers' Flux and SD3 LoRA scripts.

The objective: an image's latents x and noise n are mixed at a noise level sigma in [0, 1],
noisy = (1 - sigma) * x + sigma * n, and the transformer predicts the velocity n - x. The noise levels are
the training scheduler's (FlowMatchEulerDiscreteScheduler: its shift is in its sigmas) at timesteps drawn
by `diffusion.weighting_scheme` (uniform, logit-normal or mode density) or weighting the loss (sigma_sqrt,
cosmap), with diffusers.training_utils. Flux packs the latents in 2x2 patches with their positions
(latent image ids) and, when guidance-distilled (FLUX.1-dev), takes the guidance value as an input
(`diffusion.flux_guidance`). SD3 encodes captions with two CLIPs and T5, Flux with CLIP (pooled) and T5.

Text-encoder LoRA goes on the CLIP encoder(s) only, as diffusers' scripts do: its LoRA loaders have no
slot for a T5 LoRA, so one trained there could not be loaded with `load_lora_weights`.
"""

from dataclasses import dataclass

from ft.tasks.text_to_image import losses

FLUX, SD3 = "FluxPipeline", "StableDiffusion3Pipeline"  # model_index.json's _class_name
TINY_FAMILY = {"tiny-flux": FLUX, "tiny-flux-schnell": FLUX, "tiny-sd3": SD3}
# diffusers' Flux / SD3 LoRA scripts: the joint attention of the image stream and of the text (context) stream
TRANSFORMER_ATTENTION = ["to_k", "to_q", "to_v", "to_out.0", "add_k_proj", "add_q_proj", "add_v_proj", "to_add_out"]
DEFAULT_FLUX_GUIDANCE = 1.0  # FLUX.1-dev's guidance input while training (diffusers' Flux LoRA README trains at 1)


def family(name: str, revision: str | None = None) -> str | None:
    """FLUX or SD3 for a flow-matching pipeline, None for another one (Stable Diffusion, SDXL). From its
    model_index.json when it is on disk (a directory, the hub cache), else from the hub id's name."""
    from pathlib import Path

    from ft.tasks.text_to_image import bases

    if name in TINY_FAMILY:
        return TINY_FAMILY[name]
    path = bases.resolve_path(name)
    if bases.tiny_diffusion.is_tiny(name) or (Path(path).is_dir() and not (Path(path) / bases.MODEL_INDEX).is_file()):
        return None
    known = bases.pipeline_class_name(path, revision) if _repo_like(path) else None
    if known is not None:
        return known if known in (FLUX, SD3) else None
    lowered = name.lower()
    return FLUX if "flux" in lowered else SD3 if "stable-diffusion-3" in lowered else None


def has_guidance_embeds(name: str, revision: str | None = None) -> bool | None:
    """Whether a Flux transformer takes a guidance input (dev: yes, schnell: no); None: not known before
    loading (its config is not on disk)."""
    import json
    from pathlib import Path

    from ft.tasks.text_to_image import bases

    if name in TINY_FAMILY:
        return name == "tiny-flux"
    config = Path(bases.resolve_path(name)) / "transformer" / "config.json"
    if not config.is_file() and not _repo_like(name):
        return None
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "transformer/config.json", revision=revision)
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    return bool(json.loads(config.read_text()).get("guidance_embeds", False))


def _repo_like(path: str) -> bool:
    """A local directory, or a string the hub cache can be asked about (owner/name)."""
    from pathlib import Path

    return Path(path).is_dir() or (path.count("/") <= 1 and ".." not in path and not path.startswith("/"))


@dataclass
class FlowParts:
    path: str
    flux: bool  # FluxPipeline's layout; else StableDiffusion3Pipeline's
    tokenizers: list  # CLIP (SD3: two CLIPs), then T5's
    text_encoders: list  # likewise: CLIPTextModel(s), then T5EncoderModel
    vae: object
    transformer: object
    noise_scheduler: object  # FlowMatchEulerDiscreteScheduler as configured: its sigmas are the training noise levels
    size_factor: int  # image pixels per latent patch side: the VAE's downscaling x the transformer's patch
    max_sequence_length: int  # T5 tokens per caption
    flux_guidance: float | None  # the guidance input of a guidance-distilled Flux; None: it takes none

    flow = True
    xl = False

    @property
    def denoiser(self):
        return self.transformer

    @property
    def trainable_text_encoders(self) -> list:
        """The CLIP encoder(s): LoRA on T5 could not be loaded back by diffusers' Flux / SD3 LoRA loaders."""
        return self.text_encoders[:-1]

    def pipeline_class(self):
        from diffusers import FluxPipeline, StableDiffusion3Pipeline

        return FluxPipeline if self.flux else StableDiffusion3Pipeline


def load_parts(path: str, revision: str | None, diffusion_cfg, quantized_dtype=None) -> FlowParts:
    """Every part frozen. `quantized_dtype`: load the transformer in 4-bit NF4 computing in that dtype (QLoRA,
    diffusers' bitsandbytes quantizer: a GPU only), else fp32 like the rest."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    from ft.errors import FtError
    from ft.tasks.text_to_image import bases

    flux = bases.pipeline_class_name(path, revision) == FLUX
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler", revision=revision)
    names = ["", "_2"] if flux else ["", "_2", "_3"]
    classes = [CLIPTextModel, T5EncoderModel] if flux else [CLIPTextModelWithProjection] * 2 + [T5EncoderModel]
    tokenizers = [AutoTokenizer.from_pretrained(path, subfolder=f"tokenizer{n}", revision=revision) for n in names]
    text_encoders = [
        cls.from_pretrained(path, subfolder=f"text_encoder{n}", revision=revision) for cls, n in zip(classes, names)
    ]
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", revision=revision)
    quantization = {}
    if quantized_dtype is not None:
        from diffusers import BitsAndBytesConfig

        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=quantized_dtype
        )
        quantization = dict(quantization_config=config, torch_dtype=quantized_dtype)
    transformer_class = FluxTransformer2DModel if flux else SD3Transformer2DModel
    transformer = transformer_class.from_pretrained(path, subfolder="transformer", revision=revision, **quantization)
    for model in (vae, transformer, *text_encoders):
        model.requires_grad_(False)
    guidance = None
    if flux and transformer.config.guidance_embeds:
        guidance = diffusion_cfg.flux_guidance if diffusion_cfg.flux_guidance is not None else DEFAULT_FLUX_GUIDANCE
    elif diffusion_cfg.flux_guidance is not None:
        raise FtError(
            f"diffusion.flux_guidance={diffusion_cfg.flux_guidance}: {path}'s transformer has no guidance embedding "
            "(FLUX.1-schnell, SD3 take none): unset diffusion.flux_guidance"
        )
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    patch = 2 if flux else transformer.config.patch_size  # Flux packs 2x2 latent patches itself
    return FlowParts(
        path=path,
        flux=flux,
        tokenizers=tokenizers,
        text_encoders=text_encoders,
        vae=vae,
        transformer=transformer,
        noise_scheduler=scheduler,
        size_factor=vae_scale * patch,
        max_sequence_length=diffusion_cfg.max_sequence_length,
        flux_guidance=guidance,
    )


def parts_from_pipeline(pipe, path: str, diffusion_cfg) -> FlowParts:
    """A loaded Flux / SD3 pipeline's parts (e.g. after load_lora_weights), with a fresh training scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    flux = type(pipe).__name__ == FLUX
    names = ["", "_2"] if flux else ["", "_2", "_3"]
    guidance = None
    if flux and pipe.transformer.config.guidance_embeds:
        guidance = diffusion_cfg.flux_guidance if diffusion_cfg.flux_guidance is not None else DEFAULT_FLUX_GUIDANCE
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return FlowParts(
        path=path,
        flux=flux,
        tokenizers=[getattr(pipe, f"tokenizer{n}") for n in names],
        text_encoders=[getattr(pipe, f"text_encoder{n}") for n in names],
        vae=pipe.vae,
        transformer=pipe.transformer,
        noise_scheduler=FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config),
        size_factor=vae_scale * (2 if flux else pipe.transformer.config.patch_size),
        max_sequence_length=diffusion_cfg.max_sequence_length,
        flux_guidance=guidance,
    )


def _ids(tokenizer, captions: list[str], max_length: int, device):
    return tokenizer(
        captions, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


def encode_prompts(parts: FlowParts, captions: list[str], device, clip_encoders: list | None = None) -> tuple:
    """(prompt_embeds, pooled_projections) as FluxPipeline / StableDiffusion3Pipeline compute them. Flux: T5's
    last hidden states, CLIP's pooled output. SD3: both CLIPs' penultimate hidden states side by side, padded
    to T5's width, then T5's states after them in the sequence; both CLIPs' projected embeddings side by
    side. `clip_encoders`: the CLIP encoders as Accelerate prepared them, when they are trained."""
    import torch
    import torch.nn.functional as F

    clips = clip_encoders or parts.trainable_text_encoders
    t5_tokenizer, t5 = parts.tokenizers[-1], parts.text_encoders[-1]
    t5_states = t5(_ids(t5_tokenizer, captions, parts.max_sequence_length, device))[0]
    if parts.flux:
        tokenizer = parts.tokenizers[0]
        pooled = clips[0](_ids(tokenizer, captions, tokenizer.model_max_length, device)).pooler_output
        return t5_states, pooled
    states, pooled = [], []
    for tokenizer, encoder in zip(parts.tokenizers, clips):
        output = encoder(_ids(tokenizer, captions, tokenizer.model_max_length, device), output_hidden_states=True)
        pooled.append(output[0])  # CLIPTextModelWithProjection's text_embeds
        states.append(output.hidden_states[-2])
    clip_states = torch.cat(states, dim=-1)
    clip_states = F.pad(clip_states, (0, t5_states.shape[-1] - clip_states.shape[-1]))
    return torch.cat([clip_states, t5_states.to(clip_states.dtype)], dim=-2), torch.cat(pooled, dim=-1)


def flow_loss(
    parts: FlowParts,
    transformer,
    latents,
    prompt_embeds,
    pooled,
    diffusion,
    generator=None,
    per_example=False,
    mask=None,
):
    """The rectified-flow loss of one batch of (shifted, scaled) VAE latents B x C x h x w: the mean squared
    error of the predicted velocity, weighted per `diffusion.weighting_scheme`. `mask`: B x 1 x h x w weights
    in [0, 1], each example's loss sum(mask * err) / sum(mask) over its elements. `generator`: fixed noise and
    noise levels (the tests' fixed sets)."""
    import torch
    from diffusers import FluxPipeline
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    b, c, h, w = latents.shape
    device, scheduler = latents.device, parts.noise_scheduler
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    if diffusion.noise_offset:
        noise += diffusion.noise_offset * torch.randn((b, c, 1, 1), generator=generator, device=device).to(noise.dtype)
    u = compute_density_for_timestep_sampling(
        diffusion.weighting_scheme,
        b,
        logit_mean=diffusion.logit_mean,
        logit_std=diffusion.logit_std,
        mode_scale=diffusion.mode_scale,
        generator=generator,
    )
    indices = (u * scheduler.config.num_train_timesteps).long().clamp(0, len(scheduler.timesteps) - 1)
    timesteps = scheduler.timesteps[indices].to(device)
    sigmas = scheduler.sigmas[indices].to(device, latents.dtype).view(b, 1, 1, 1)
    noisy = (1.0 - sigmas) * latents + sigmas * noise
    if parts.flux:
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        guidance = None
        if parts.flux_guidance is not None:
            guidance = torch.full((b,), parts.flux_guidance, device=device, dtype=latents.dtype)
        prediction = transformer(
            hidden_states=packed,
            timestep=timesteps / 1000,  # FluxPipeline's: the transformer scales it back by 1000
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=prompt_embeds,
            txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=device, dtype=latents.dtype),
            img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, latents.dtype),
            return_dict=False,
        )[0]
        vae_scale = parts.size_factor // 2
        prediction = FluxPipeline._unpack_latents(prediction, h * vae_scale, w * vae_scale, vae_scale)
    else:
        prediction = transformer(
            hidden_states=noisy,
            timestep=timesteps,
            encoder_hidden_states=prompt_embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
    weighting = compute_loss_weighting_for_sd3(diffusion.weighting_scheme, sigmas).float()
    loss = losses.per_example(weighting * (prediction.float() - (noise - latents).float()) ** 2, mask)
    return loss if per_example else loss.mean()


def loaded_family(path: str, revision: str | None) -> str | None:
    """FLUX or SD3 for the pipeline at `path` (a directory or hub id, its model_index.json fetched if need
    be), None for a Stable Diffusion / SDXL one: which loader trains it."""
    import json
    from pathlib import Path

    from ft.tasks.text_to_image import bases

    name = bases.pipeline_class_name(path, revision)
    if name is None and not Path(path).is_dir():
        from huggingface_hub import hf_hub_download

        index = hf_hub_download(path, bases.MODEL_INDEX, revision=revision)
        name = json.loads(Path(index).read_text()).get("_class_name")
    return name if name in (FLUX, SD3) else None
