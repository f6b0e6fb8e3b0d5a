"""Run by `accelerate launch` in the distributed tests: trains with ft's own training path, then
every rank takes part in one forward pass (ZeRO-3 gathers its shards for it) and rank 0 saves the
logits its model gives, for the test to compare with the saved adapter."""

import os
import sys

import bitsandbytes
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
# bytes each 4-bit layer stores per weight, whatever tensor type carries them (uint8, or the compute dtype under FSDP)
four_bit = [m for m in model.modules() if isinstance(m, bitsandbytes.nn.Linear4bit)]
stored = [
    (m.weight.numel() * m.weight.element_size(), m.in_features * m.out_features, m.weight.dtype) for m in four_bit
]
if trainer.is_world_process_zero():
    torch.save(
        {
            "logits": logits,
            "world_size": int(os.environ["WORLD_SIZE"]),
            "prompts": PROMPTS,
            "fsdp": trainer.is_fsdp_enabled,
            "bytes_per_4bit_weight": sum(s[0] for s in stored) / sum(s[1] for s in stored) if stored else None,
            "4bit_storage_dtypes": {str(s[2]) for s in stored},
        },
        out_file,
    )
distributed.close()
# Past this point only the interpreter's teardown is left, where torch's C++ threads can still abort the
# process ("terminate called without an active exception", SIGABRT) after a run that succeeded: seen once in
# CI after an FSDP resume on gloo, with the process group already destroyed. The test judges the run by what
# it saved, so the worker leaves without that teardown.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
