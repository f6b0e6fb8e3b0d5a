"""The architecture settings of the hub models ft's recipes name, as their config.json files publish them.

`ft estimate` sizes a model from its config alone; without the hub (offline, or a gated repo) these let it
size the shipped 7-8B recipes all the same. Only the keys that shape the parameters (and the dtype the
weights are stored in) are kept.
"""

PUBLISHED = {
    # https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json
    "mistralai/Mistral-7B-v0.1": dict(
        model_type="mistral",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        dtype="bfloat16",
    ),
    # https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json
    "meta-llama/Meta-Llama-3-8B": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        dtype="bfloat16",
    ),
    # https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json
    "Qwen/Qwen3-8B": dict(
        model_type="qwen3",
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        tie_word_embeddings=False,
        dtype="bfloat16",
    ),
}


def config(name_or_path: str):
    """The transformers config published for `name_or_path`, or None when ft ships none for it."""
    settings = PUBLISHED.get(name_or_path)
    if settings is None:
        return None
    from transformers import AutoConfig

    settings = dict(settings)
    return AutoConfig.for_model(settings.pop("model_type"), **settings)
