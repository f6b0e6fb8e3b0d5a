"""Run by `accelerate launch` in the distributed tests: trains with ft's own training path, then
every rank takes part in one forward pass (ZeRO-3 gathers its shards for it) and rank 0 saves the
logits its model gives, for the test to compare with the saved adapter."""

import os
import sys

import torch

from ft import config
from ft.run import distributed
from ft.training.launch import train

PROMPTS = ["What is 12 + 30?", "Reverse the letters: abcde"]

out_file, overrides = sys.argv[1], sys.argv[2:]
result = train(config.compose(overrides))
trainer = result.trainer
batch = trainer.processing_class(PROMPTS, return_tensors="pt", padding=True)
model = trainer.model_wrapped
model.eval()
with torch.no_grad():
    logits = model(**batch).logits
if trainer.is_world_process_zero():
    world_size = int(os.environ["WORLD_SIZE"])
    torch.save(
        {"logits": logits, "world_size": world_size, "prompts": PROMPTS, "fsdp": trainer.is_fsdp_enabled}, out_file
    )
distributed.close()
