"""The offline tiny text-to-image pipelines: `tiny-sd` (Stable Diffusion's layout: UNet, VAE, one CLIP text
encoder) and `tiny-sdxl` (SDXL's: two text encoders, the second with a projection, and the UNet's
size/crop conditioning), built from config with random weights and a CLIP tokenizer made from a small
local vocabulary. Built once into the cache, then loaded like any local pipeline directory, so
training, `load_lora_weights` and generation run on diffusers' real code paths.
"""

import shutil
import tempfile
from pathlib import Path

from ft.models.tiny import cache_root
from ft.tasks.text_to_image.schema import TINY_DIFFUSION_MODELS

BUILD_VERSION = 1  # bump when a shape or the vocabulary changes, to rebuild caches
SEED = 0
TEXT_WIDTH = 32  # hidden size of each text encoder
MAX_TOKENS = 32  # the tokenizer's model_max_length (real CLIP: 77)
SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
# Whole-word tokens: the synthetic captions' words and DreamBooth's usual ones; any other word is spelled
WORDS = (
    "a an the of on in with and photo picture image painting drawing small big large "
    "red green blue yellow purple orange white black gray pink "
    "circle square triangle cross ring stripe shape background sks toy dog cat person style"
).split()
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"


def is_tiny(name: str) -> bool:
    return name in TINY_DIFFUSION_MODELS


def ensure(name: str) -> Path:
    """The tiny pipeline's directory, built on first use. Concurrent builders race safely (rename)."""
    target = cache_root() / f"{name}-v{BUILD_VERSION}"
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(name).save_pretrained(staging)
        staging.rename(target)
    except OSError:
        if not (target / "model_index.json").exists():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tokenizer():
    """A CLIP tokenizer over single characters plus the whole words above (BPE merges spell them)."""
    from transformers import CLIPTokenizer

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = []
    for word in WORDS:  # merge left to right: "r e" -> "re", "re d</w>" -> "red</w>"
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = (pieces[0], pieces[1])
            if merge not in merges:
                merges.append(merge)
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def _text_config(vocab_size: int, eos: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_WIDTH,
        bos_token_id=0,
        eos_token_id=eos,
        pad_token_id=eos,
    )


def build(name: str):
    """A random pipeline of the named layout (seeded: the same weights every time)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(SEED)
    tok = tokenizer()
    text_config = _text_config(len(tok), tok.eos_token_id)
    xl = name == "tiny-sdxl"
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
        cross_attention_dim=2 * TEXT_WIDTH if xl else TEXT_WIDTH,  # SDXL: both encoders' states side by side
        # SDXL: the pooled text embedding and 6 size/crop numbers join the timestep embedding
        **(
            dict(
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=6 * 8 + TEXT_WIDTH,
                use_linear_projection=True,
            )
            if xl
            else {}
        ),
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32),  # one downsampling: latents are half the image size
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    if not xl:
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(text_config),
            tokenizer=tok,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tok,
        tokenizer_2=tok,
        unet=unet,
        scheduler=scheduler,
    )
