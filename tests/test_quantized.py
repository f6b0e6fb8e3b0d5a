"""QLoRA on CPUs: bitsandbytes 0.50 takes one of two code paths by CPU. With AVX512-BF16 it repacks a
4-bit weight for a faster inference kernel on the first eval-mode forward without grad (evaluation,
generation); elsewhere it keeps one layout. These tests drive that eval / no-grad / generate path, so
whichever path the machine takes is covered; `has_avx512bf16` in the test ids says which one ran.
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
    """The inference path itself: eval mode, no grad, a forward and a generate on the 4-bit tiny base."""
    import bitsandbytes as bnb

    cfg = config.compose(["peft=qlora"])
    model_config = models.load_config(cfg.model)
    quantization = models.quantization_config(cfg.peft, torch.float32, model_config)
    model = models.load_model(cfg.model, torch.float32, quantization_config=quantization).eval()
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == 7 * model_config.num_hidden_layers
    tokenizer = models.load_tokenizer(cfg.model)
    inputs = tokenizer(["What is 2 + 3?"], return_tensors="pt")
    with torch.no_grad():
        first = model(**inputs).logits
        second = model(**inputs).logits  # after the repack, on AVX512-BF16 CPUs
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.isfinite(first).all() and torch.allclose(first, second, atol=1e-3)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4


def test_layers_the_cpu_kernels_cannot_take_stay_unquantized(tmp_path, capsys):
    """A model whose MLP width is no multiple of 64 (as ft's tiny model once was) trains, evaluates and
    generates: those layers stay in full precision, with a note; the others are 4-bit."""
    import bitsandbytes as bnb

    trainer = _trainer(tmp_path, "model.tiny.intermediate_size=688")
    assert "keeping 12 linear layers unquantized" in capsys.readouterr().out  # 4 layers x 3 MLP
    layers = dict(trainer.model.named_modules())
    assert isinstance(layers["base_model.model.model.layers.0.mlp.down_proj.base_layer"], torch.nn.Linear)
    assert not isinstance(layers["base_model.model.model.layers.0.mlp.down_proj.base_layer"], bnb.nn.Linear4bit)
    assert isinstance(layers["base_model.model.model.layers.0.self_attn.q_proj.base_layer"], bnb.nn.Linear4bit)
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_loss"])  # finite, no crash
    inputs = trainer.processing_class(["What is 2 + 3?"], return_tensors="pt")
    trainer.model.eval()
    with torch.no_grad():
        generated = trainer.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3
