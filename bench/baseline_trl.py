"""The script a user would write by hand without ft: TRL's SFTTrainer and a PEFT LoraConfig on ft's tiny
model and synthetic data, ending with the adapter saved. It is the baseline of bench/overhead.py, so it
must do the same training as `python -m ft train` with the same overrides: every hyperparameter is read
from ft's resolved config (the default recipe, then the key=value overrides given here), none is
written here, so the two cannot drift apart again. ft is used only for that config and for the very
same model files and data rows; the TRL and PEFT objects are built plainly, as a user would.
tests/test_bench.py checks that they equal what ft builds from the same config.

    python bench/baseline_trl.py OUTPUT_DIR [key=value ...]      e.g. training.max_steps=60
"""

import sys
from pathlib import Path

from ft import config
from ft.config.schema import TINY_MODEL
from ft.errors import FtError


def settings(overrides: list[str]):
    """The resolved config of `python -m ft train OVERRIDES` (the default recipe unless one is named),
    limited to what this script mirrors."""
    cfg = config.compose(list(overrides))
    p = cfg.peft
    if cfg.task != "sft" or cfg.data.source != "synthetic" or cfg.data.sources:
        raise FtError("the baseline mirrors SFT on the synthetic tasks only (task=sft, data.source=synthetic)")
    if p.method != "lora" or p.load_in_4bit or p.load_in_8bit or p.use_dora or p.loraplus_lr_ratio:
        raise FtError("the baseline mirrors plain LoRA only (peft=lora)")
    if cfg.model.name_or_path != TINY_MODEL:
        raise FtError("the baseline mirrors the tiny model only (model=tiny)")
    return cfg


def model_path(cfg) -> str:
    from ft.models import tiny

    return str(tiny.ensure(cfg.model.tiny))  # ft's cache of the tiny model: the very same files


def datasets(cfg):
    """The synthetic conversations with the same held-out split as ft's."""
    from datasets import Dataset

    from ft.data import synthetic

    s = cfg.data.synthetic
    rows = synthetic.generate(list(s.tasks), s.num_examples, seed=s.seed)
    return Dataset.from_list(rows).train_test_split(test_size=cfg.data.eval_size, seed=cfg.data.seed)


def sft_config(cfg, output_dir):
    from trl import SFTConfig

    t, o = cfg.training, cfg.optim
    return SFTConfig(
        output_dir=str(output_dir),
        seed=t.seed,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        optim=o.name,
        weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2,
        adam_epsilon=o.adam_epsilon,
        max_grad_norm=o.max_grad_norm,
        max_length=t.max_length,
        packing=t.packing,
        padding_free=t.padding_free,
        assistant_only_loss=t.assistant_only_loss,
        logging_steps=t.logging_steps,
        dataloader_num_workers=t.dataloader_num_workers,
        use_cpu=True,  # TRL's defaults (bf16, activation checkpointing) fail or crawl on a CPU
        bf16=False,
        activation_checkpointing=False,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
    )


def lora_config(cfg):
    from peft import LoraConfig

    p = cfg.peft
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=p.r,
        lora_alpha=p.lora_alpha,
        lora_dropout=p.lora_dropout,
        target_modules=p.target_modules if isinstance(p.target_modules, str) else list(p.target_modules),
        bias=p.bias,
        modules_to_save=list(p.modules_to_save) if p.modules_to_save else None,
        use_rslora=p.use_rslora,
        init_lora_weights=p.init_lora_weights,
    )


def main(argv: list[str]) -> None:
    if not argv or "=" in argv[0]:
        sys.exit("usage: python bench/baseline_trl.py OUTPUT_DIR [key=value ...]")
    try:
        cfg = settings(argv[1:])
    except FtError as e:
        sys.exit(f"baseline_trl: {e}")
    output_dir = Path(argv[0])

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path(cfg))
    model = AutoModelForCausalLM.from_pretrained(
        model_path(cfg), dtype="float32", attn_implementation=cfg.model.attn_implementation
    )
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, output_dir),
        train_dataset=datasets(cfg)["train"],
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
    )
    trainer.train()
    trainer.save_model()
    trainer.save_state()


if __name__ == "__main__":
    main(sys.argv[1:])
