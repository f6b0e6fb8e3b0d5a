"""The offline tiny model: a Llama (or, with `model.tiny.family`, a real family's architecture, chat
template and special tokens: ft.models.families) built from config with random weights and a BPE
tokenizer trained locally with `tokenizers`. Built once per shape into a cache directory, then loaded like any local
model, so everything downstream (PEFT, TRL, merge, generate) runs on the real code paths.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ft.config.schema import TinyModelConfig
from ft.data import synthetic
from ft.models import families

BUILD_VERSION = 3  # bump when the tokenizer corpus or template changes, to rebuild caches

PAD, BOS, EOS = "<|pad|>", "<|im_start|>", "<|im_end|>"

# ChatML with {% generation %} markers: TRL's assistant_only_loss masks exactly those spans. The
# assistant turn ends with EOS inside the span, so the model learns to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_ENGLISH = (
    "The quick brown fox jumps over the lazy dog. You are a helpful assistant. Answer the question. "
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. Summarize the text in one sentence. "
    "Translate the sentence into French. Explain why the sky is blue. List three colors. Hello, world! "
    "system user assistant "
)


def cache_root() -> Path:
    return Path(os.environ.get("FT_CACHE", Path.home() / ".cache" / "ft")).expanduser()


def path_for(shape: TinyModelConfig) -> Path:
    family = families.FAMILIES.get(shape.family)
    settings = dataclasses.asdict(family) if family else None  # a family's changed settings build anew
    key = json.dumps({"v": BUILD_VERSION, **dataclasses.asdict(shape), "family_settings": settings}, sort_keys=True)
    return cache_root() / f"tiny-{shape.family}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure(shape: TinyModelConfig) -> Path:
    """The tiny model's directory, built on first use. Concurrent builders race safely (rename)."""
    return build_once(path_for(shape), lambda out: _build(shape, out))


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, written by `build(staging_dir)` unless it holds a model already; the staging directory is
    renamed into place, so a reader never sees half a model and concurrent builders race safely."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(staging)
        staging.rename(target)
    except OSError:
        if not (target / "config.json").exists():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _corpus() -> list[str]:
    rows = synthetic.generate(list(synthetic.TASKS), 4000, seed=12345)
    texts = [m["content"] for row in rows for m in row["messages"]]
    return texts + [" ".join(synthetic.WORDS), " ".join(synthetic.WORDS).upper(), _ENGLISH] * 20


def train_bpe(vocab_size: int, special_tokens: list[str], rstrip=()):
    """A byte-level BPE `tokenizers.Tokenizer` trained on ft's synthetic corpus, `special_tokens` first in
    its vocabulary (`rstrip`: those that take the whitespace after them)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    # Single digits keep arithmetic learnable; byte-level makes any text encodable.
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[
            AddedToken(token, special=True, normalized=False, rstrip=token in rstrip) for token in special_tokens
        ],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer)
    return bpe


def _build(shape: TinyModelConfig, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    family = families.FAMILIES.get(shape.family)
    specials = families.special_tokens(family) if family else [PAD, BOS, EOS]
    bpe = train_bpe(shape.vocab_size, specials, family.rstrip if family else ())
    if family:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token=family.bos,
            eos_token=family.eos,
            pad_token=family.pad,
            extra_special_tokens=[t for t in specials if t not in (family.bos, family.eos)],
            chat_template=family.chat_template(),
        )
    else:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE
        )
    tokenizer.model_max_length = shape.max_position_embeddings
    config = (
        families.model_config(family, shape, tokenizer)
        if family
        else LlamaConfig(**families.shape_settings(shape, tokenizer))
    )
    torch.manual_seed(shape.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    stop = families.stop_token_ids(family, tokenizer) if family else [tokenizer.eos_token_id]
    model.generation_config.eos_token_id = stop if len(stop) > 1 else stop[0]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if family and family.tokenizer_class:
        tokenizer_config = out / "tokenizer_config.json"
        saved = json.loads(tokenizer_config.read_text())
        tokenizer_config.write_text(json.dumps(saved | {"tokenizer_class": family.tokenizer_class}, indent=2))
