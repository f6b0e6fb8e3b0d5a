"""Real model families for the offline tiny model (`model.tiny.family`): each family's architecture
(built from its transformers config with random weights), its real chat template and its special
tokens. The templates are TRL's copies of the families' own (`trl.chat_template_utils`); TRL has no
Mistral one, so MISTRAL_TEMPLATE is Mistral-7B-Instruct-v0.1's (Mixtral-8x7B-Instruct-v0.1 ships
the same): no system turn, no generation markers.
"""

from dataclasses import dataclass, field

# Mistral-7B-Instruct-v0.1's tokenizer_config.json chat_template, verbatim
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    config_class: str  # a transformers config class
    template: str  # "trl:NAME" (trl.chat_template_utils.NAME_chat_template) or "mistral"
    bos: str | None
    eos: str
    pad: str | None  # None: the real tokenizer has none (ft pads with EOS)
    end_of_turn: str  # the token that closes an assistant turn: the one the model must learn to emit
    specials: tuple = ()  # more special tokens the template writes
    system_turn: bool = True  # the template accepts a system turn
    config: dict = field(default_factory=dict)  # architecture settings beyond the tiny shape
    moe: bool = False
    # tokenizer_config.json's tokenizer_class where a reader goes by it (llama.cpp's Phi-3 converter reads a
    # BPE vocabulary, as Phi-4-mini's, only for GPT2Tokenizer)
    tokenizer_class: str | None = None
    rstrip: tuple = ()  # special tokens that take the whitespace after them (Phi-3's, as llama.cpp also assumes)

    def chat_template(self) -> str:
        if self.template == "mistral":
            return MISTRAL_TEMPLATE
        from trl import chat_template_utils

        return getattr(chat_template_utils, f"{self.template.removeprefix('trl:')}_chat_template")

    @property
    def template_source(self) -> str:
        if self.template == "mistral":
            return "Mistral-7B-Instruct-v0.1 (in ft)"
        return f"TRL {self.template.removeprefix('trl:')}.jinja"


QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
MOE = dict(num_experts_per_tok=2)
FAMILIES = {
    "llama3": Family(
        "LlamaConfig",
        "trl:llama3",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad=None,
        end_of_turn="<|eot_id|>",
        specials=("<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"),
    ),
    "mistral": Family(
        "MistralConfig", "mistral", bos="<s>", eos="</s>", pad=None, end_of_turn="</s>", system_turn=False
    ),
    "qwen2_5": Family(
        "Qwen2Config", "trl:qwen2_5", bos=None, eos="<|im_end|>", pad="<|endoftext|>", end_of_turn="<|im_end|>",
        specials=QWEN_SPECIALS,
    ),
    "qwen3": Family(
        "Qwen3Config", "trl:qwen3", bos=None, eos="<|im_end|>", pad="<|endoftext|>", end_of_turn="<|im_end|>",
        specials=(*QWEN_SPECIALS, "<think>", "</think>"),
    ),
    "gemma3": Family(
        "Gemma3TextConfig", "trl:gemma3", bos="<bos>", eos="<eos>", pad="<pad>", end_of_turn="<end_of_turn>",
        specials=("<start_of_turn>", "<end_of_turn>"),
        config=dict(sliding_window=64, layer_types=None),
    ),
    "phi3": Family(
        "Phi3Config", "trl:phi3", bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", end_of_turn="<|end|>",
        specials=("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<unk>", "</s>"),
        tokenizer_class="GPT2Tokenizer", rstrip=("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "</s>"),
    ),
    "qwen3_moe": Family(
        "Qwen3MoeConfig", "trl:qwen3", bos=None, eos="<|im_end|>", pad="<|endoftext|>", end_of_turn="<|im_end|>",
        specials=(*QWEN_SPECIALS, "<think>", "</think>"),
        config=dict(MOE, num_experts=4, decoder_sparse_step=1, norm_topk_prob=True), moe=True,  # as Qwen3-30B-A3B
    ),
    "mixtral": Family(
        "MixtralConfig", "mistral", bos="<s>", eos="</s>", pad=None, end_of_turn="</s>", system_turn=False,
        config=dict(MOE, num_local_experts=4), moe=True,
    ),
}  # fmt: skip


def special_tokens(family: Family) -> list[str]:
    tokens = [family.pad, family.bos, family.eos, family.end_of_turn, *family.specials]
    return list(dict.fromkeys(t for t in tokens if t))


def shape_settings(shape, tokenizer) -> dict:
    """The config keywords every family shares: the tiny shape, and the token ids from `tokenizer`."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.hidden_size // shape.num_attention_heads,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def model_config(family: Family, shape, tokenizer):
    """The family's transformers config for the tiny shape, token ids from `tokenizer`."""
    import transformers

    config_class = getattr(transformers, family.config_class)
    settings = shape_settings(shape, tokenizer) | family.config
    if family.config_class == "Gemma3TextConfig":  # real Gemma 3 scales queries by 1/sqrt(head_dim), as llama.cpp does
        settings["query_pre_attn_scalar"] = settings["head_dim"]
    if family.moe:  # experts are narrower than a dense MLP
        settings["moe_intermediate_size" if "num_experts" in settings else "intermediate_size"] = (
            shape.intermediate_size // 2
        )
    return config_class(**settings)


def stop_token_ids(family: Family, tokenizer) -> list[int]:
    """What generation stops on: EOS and the end-of-turn token (generation_config.eos_token_id)."""
    return list(dict.fromkeys(tokenizer.convert_tokens_to_ids([family.eos, family.end_of_turn])))
