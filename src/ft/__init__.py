"""ft: LoRA/QLoRA fine-tuning of causal language models, composed from Hydra recipes."""

__version__ = "0.1.0"
