"""The script a user would write by hand without ft: TRL SFTTrainer + PEFT LoRA, with the same tiny
model, data and hyperparameters as ft's `default` recipe. Used by bench/overhead.py as the baseline.

    python bench/baseline_trl.py OUTPUT_DIR [MAX_STEPS]
"""

import sys

from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ft.config.schema import TinyModelConfig
from ft.data import synthetic  # only to get the very same model files and data rows
from ft.models import tiny

output_dir = sys.argv[1]
max_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200

model_path = tiny.ensure(TinyModelConfig())
tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path, dtype="float32", attn_implementation="sdpa")
rows = synthetic.generate(["add", "reverse", "upper", "sort"], 2000, seed=0)
split = Dataset.from_list(rows).train_test_split(test_size=0.05, seed=0)

args = SFTConfig(
    output_dir=output_dir,
    max_steps=max_steps,
    per_device_train_batch_size=16,
    learning_rate=2e-3,
    lr_scheduler_type="cosine",
    warmup_steps=0.05,
    optim="adamw_torch",
    max_length=128,
    assistant_only_loss=True,
    use_cpu=True,  # TRL's defaults (bf16, activation checkpointing) fail or crawl on a CPU
    bf16=False,
    activation_checkpointing=False,
    logging_steps=10,
    eval_strategy="no",
    save_strategy="no",
    report_to="none",
    seed=42,
)
peft_config = LoraConfig(
    task_type="CAUSAL_LM",
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules="all-linear",
    modules_to_save=["lm_head"],
)
trainer = SFTTrainer(
    model=model, args=args, train_dataset=split["train"], processing_class=tokenizer, peft_config=peft_config
)
trainer.train()
trainer.save_state()
