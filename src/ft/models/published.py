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
    # https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json (vision-language: nested configs)
    "Qwen/Qwen2.5-VL-7B-Instruct": dict(
        model_type="qwen2_5_vl",
        text_config=dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            max_position_embeddings=128000,
            rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            patch_size=14,
            spatial_merge_size=2,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
        ),
        image_token_id=151655,
        tie_word_embeddings=False,
        dtype="bfloat16",
    ),
    # https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct/blob/main/config.json
    "HuggingFaceTB/SmolVLM-256M-Instruct": dict(
        model_type="idefics3",
        text_config=dict(
            model_type="llama",
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49280,
            max_position_embeddings=8192,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=16,
            image_size=512,
        ),
        scale_factor=4,
        image_token_id=49190,
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
