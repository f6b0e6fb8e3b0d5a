"""The offline tiny text-to-image pipelines: `tiny-sd` (Stable Diffusion's layout: UNet, VAE, one CLIP text
encoder) and `tiny-sdxl` (SDXL's: two text encoders, the second with a projection, and the UNet's
size/crop conditioning), built from config with random weights and a CLIP tokenizer made from a small
local vocabulary. The flow-matching ones: `tiny-flux` (Flux.1-dev's layout: a FluxTransformer2DModel with
the guidance embedding of the guidance-distilled dev model, a 16-channel-style VAE with shift and scale,
CLIP for the pooled embedding and T5 for the sequence), `tiny-flux-schnell` (the same without the guidance
embedding, schnell's unshifted schedule) and `tiny-sd3` (SD3.5's: an SD3Transformer2DModel, two CLIPs with
projections and T5). T5's tokenizer is a Unigram model trained here on the same words. Built once into the
cache, then loaded like any local pipeline directory, so training, `load_lora_weights` and generation run on
diffusers' real code paths.
"""

import shutil
import tempfile
from pathlib import Path

from ft.models.tiny import cache_root
from ft.tasks.text_to_image.schema import TINY_DIFFUSION_MODELS

FLOW_MODELS = ["tiny-flux", "tiny-flux-schnell", "tiny-sd3"]  # the flow-matching (transformer) ones

BUILD_VERSION = 1  # bump when a shape or the vocabulary changes, to rebuild caches
SEED = 0
TEXT_WIDTH = 32  # hidden size of each text encoder
MAX_TOKENS = 32  # the tokenizer's model_max_length (real CLIP: 77)
T5_WIDTH = 2 * TEXT_WIDTH  # T5's d_model: SD3 pads the two CLIPs' states, side by side, to it
T5_SPECIAL = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2
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


def t5_tokenizer():
    """A T5 tokenizer (SentencePiece's Unigram model with Metaspace pre-tokenization, `</s>` appended) over
    the words above as whole pieces and single characters, which spell any other word."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    # log-probabilities: a whole word beats spelling it, so "red" is one piece "▁red"
    pieces = [(token, 0.0) for token in T5_SPECIAL] + [("▁" + word, -1.0) for word in WORDS]
    pieces += [("▁", -5.0)] + [(c, -10.0) for c in CHARS]
    tok = Tokenizer(models.Unigram(pieces, unk_id=T5_SPECIAL.index("<unk>")))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)


def _t5(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=T5_WIDTH,
            d_kv=8,
            d_ff=2 * T5_WIDTH,
            num_layers=2,
            num_heads=4,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def _flow_vae():
    """Flux's and SD3's VAE layout (latents shifted and scaled, no quant convs), one downsampling."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
        shift_factor=0.0609,
        scaling_factor=1.5035,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def build_flow(name: str):
    """tiny-flux / tiny-flux-schnell / tiny-sd3 (seeded: the same weights every time)."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(SEED)
    tok, t5_tok = tokenizer(), t5_tokenizer()
    text_config = _text_config(len(tok), tok.eos_token_id)
    vae = _flow_vae()
    if name == "tiny-sd3":
        transformer = SD3Transformer2DModel(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=4,
            joint_attention_dim=T5_WIDTH,
            caption_projection_dim=64,  # = heads x head dim
            pooled_projection_dim=2 * TEXT_WIDTH,  # both CLIPs' projected embeddings side by side
            pos_embed_max_size=32,
        )
        return StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae,
            text_encoder=CLIPTextModelWithProjection(text_config),
            tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(text_config),
            tokenizer_2=tok,
            text_encoder_3=_t5(len(t5_tok)),
            tokenizer_3=t5_tok,
        )
    dev = name == "tiny-flux"
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * 4,  # the latents packed in 2x2 patches
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=TEXT_WIDTH,
        guidance_embeds=dev,  # FLUX.1-dev is guidance-distilled: the guidance is an input; schnell has none
        axes_dims_rope=(4, 6, 6),  # sums to the head dim
    )
    # dev: the resolution-dependent shift; schnell: none
    scheduler = (
        FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=16
        )
        if dev
        else FlowMatchEulerDiscreteScheduler(shift=1.0)
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tok,
        text_encoder_2=_t5(len(t5_tok)),
        tokenizer_2=t5_tok,
        transformer=transformer,
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

    if name in FLOW_MODELS:
        return build_flow(name)
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
