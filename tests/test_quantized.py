"""QLoRA on CPUs. bitsandbytes 0.50 takes one of two code paths by CPU: with AVX512-BF16 it repacks a
4-bit weight for a bf16 inference kernel on the first eval-mode forward without grad (evaluation,
generation), which breaks the gradients of later training steps and crashes on layer widths that
are no multiple of 32/64, such as the tiny model's 688; elsewhere it never repacks. ft turns the
repack off (ft.models.disable_4bit_cpu_repack). These tests drive the eval / no-grad / generate path
on the tiny model, so whichever CPU the suite runs on is covered; the test ids say which one it was.
"""

import pytest
import torch

from conftest import QUICK
from ft import config, models
from ft.tasks.sft import build_trainer

pytestmark = pytest.mark.slow

PATH = "avx512bf16" if __import__("bitsandbytes.functional").functional.has_avx512bf16() else "generic"
NO_DROPOUT = ["peft=qlora", "peft.lora_dropout=0", "training.per_device_train_batch_size=4", "training.max_length=64"]


def _trainer(tmp_path, *overrides):
    cfg = config.compose([*QUICK, *NO_DROPOUT, f"training.output_dir={tmp_path}", "training.run_name=run", *overrides])
    return build_trainer(cfg, tmp_path / "run")


def _gradients(trainer, batch) -> dict:
    model = trainer.model
    model.train()
    model.zero_grad()
    model(**batch).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("path", [PATH])
def test_an_evaluation_between_steps_leaves_qlora_gradients_unchanged(tmp_path, path):
    """The Trainer evaluates between training steps. On AVX512-BF16 CPUs that evaluation used to leave
    the 4-bit weights in the inference layout, and every gradient through them was wrong afterwards."""
    trainer = _trainer(tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    before = _gradients(trainer, batch)
    trainer.evaluate()
    after = _gradients(trainer, batch)
    assert any(g.abs().max() > 0 for g in before.values())
    worst = max(((after[n] - g).abs().max() / g.abs().max().clamp_min(1e-12)).item() for n, g in before.items())
    assert worst < 1e-4, f"gradients changed by {worst:.3g} (relative) after an evaluation"


@pytest.mark.parametrize("path", [PATH])
def test_a_quantized_base_runs_eval_and_generate_without_grad(tmp_path, path):
    """The inference path as `ft generate` / `ft eval` load it: eval mode, no grad, a forward and a
    generate on the 4-bit tiny base (MLP width 688)."""
    import bitsandbytes as bnb

    cfg = config.compose(["peft=qlora"])
    model_config = models.load_config(cfg.model)
    quantization = models.quantization_config(cfg.peft, torch.float32)
    model = models.load_model(cfg.model, torch.float32, quantization_config=quantization).eval()
    models.disable_4bit_cpu_repack(model)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == 7 * model_config.num_hidden_layers
    tokenizer = models.load_tokenizer(cfg.model)
    inputs = tokenizer(["What is 2 + 3?"], return_tensors="pt")
    with torch.no_grad():
        first = model(**inputs).logits
        second = model(**inputs).logits  # after the repack, on AVX512-BF16 CPUs
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.isfinite(first).all() and torch.allclose(first, second, atol=1e-3)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
