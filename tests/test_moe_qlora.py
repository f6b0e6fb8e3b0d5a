"""QLoRA on MoE models (issue 27): transformers 5's fused 3-D experts, which bitsandbytes leaves in full
precision, held in 4-bit by ft (ft.models.experts), with PEFT's LoRA on them. On the tiny Qwen3-MoE and
Mixtral: the stored experts take at most 30% of their bf16 bytes, the run trains through the CLI's entry
function, reloads with the trained logits and merges into the dequantized base within QLoRA's tolerance;
gradients through the 4-bit experts are those through the same values in full precision.
"""

import contextlib
import io

import pytest
import torch

from conftest import free_port, run_ft
from ft import cli, config, models, rules
from ft.errors import FtError
from ft.finish import loading
from ft.models import adapters, experts
from ft.run import callbacks
from test_family_matrix import FAST, _batch
from test_peft import _Capture, _logits

MOE = ["qwen3_moe", "mixtral"]
SMALL = [o for o in FAST if o.startswith("model.tiny.")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """family -> (run_dir, trained model, ft's stdout) of a two-step QLoRA run on all linear layers and experts."""
    out, runs = tmp_path_factory.mktemp("moe"), {}

    def get(family):
        if family not in runs:
            capture, printed = _Capture(), io.StringIO()
            build = callbacks.build
            with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
                mp.setattr(callbacks, "build", lambda cfg, run_dir: [*build(cfg, run_dir), capture])
                argv = [*FAST, f"model.tiny.family={family}", "peft=qlora", f"training.output_dir={out}"]
                assert cli.main(["train", *argv, f"training.run_name={family}"]) == 0
            runs[family] = (out / family, capture.model.eval(), printed.getvalue(), capture.initial)
        return runs[family]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("family", MOE)
def test_qlora_trains_with_the_experts_in_4bit(trained, family):
    run_dir, model, printed, initial = trained(family)
    stored = experts.quantized(model)
    assert stored and len(stored) == sum(p.dim() == 3 for p in model.parameters())  # every fused expert weight
    stored_bytes = sum(p.stored_bytes() for p in stored)
    bf16_bytes = sum(p.numel() * 2 for p in stored)
    assert stored_bytes <= 0.30 * bf16_bytes, f"{stored_bytes} bytes stored, {bf16_bytes} in bf16"
    assert "fused MoE experts of tiny in 4-bit nf4" in printed and "leaves the fused MoE experts" not in printed
    params = dict(model.named_parameters())
    # two steps from B = 0 move B (A's gradient is zero until B is not): every expert LoRA B trained
    expert_lora_b = [n for n in initial if ".experts." in n and "lora_B" in n]
    assert expert_lora_b and all(not torch.equal(params[n].detach().float(), initial[n]) for n in expert_lora_b)


@pytest.mark.slow
@pytest.mark.parametrize("family", MOE)
def test_reloads_and_merges_with_the_experts_as_trained(trained, family):
    run_dir, model, _, _ = trained(family)
    cfg = loading.load_config(run_dir)
    batch = _batch(run_dir)
    expected = _logits(model, batch)

    reloaded = loading.load_model(run_dir, cfg, device_map=None)
    assert experts.quantized(reloaded)
    assert (_logits(reloaded, batch) - expected).abs().max().item() <= 1e-6

    merged = loading.load_model(run_dir, cfg, device_map=None, dequantize=True).merge_and_unload()
    assert not experts.quantized(merged) and any(p.dim() == 3 for p in merged.parameters())
    diff = (_logits(merged, batch) - expected).abs().max().item()
    assert diff / expected.abs().max().item() <= 2e-2, diff


def _tiny_4bit(family, *overrides):
    cfg = config.compose([*SMALL, f"model.tiny.family={family}", "peft=qlora", *overrides])
    quantization = models.quantization_config(cfg.peft, torch.float32)
    model = models.load_model(cfg.model, torch.float32, quantization_config=quantization)
    models.disable_4bit_cpu_repack(model)
    return cfg, model


def _lora_gradients(model, batch) -> dict:
    model.zero_grad()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and ".experts." in n}


@pytest.mark.parametrize(
    "family, quantization",
    [("qwen3_moe", []), ("mixtral", ["peft.bnb_4bit_quant_type=fp4", "peft.bnb_4bit_use_double_quant=false"])],
)
def test_gradients_through_4bit_experts_are_those_of_their_values_in_full_precision(family, quantization):
    """The same LoRA weights on the experts, given once as 4-bit blocks dequantized in the forward and
    once as those values in a plain fp32 parameter: the LoRA gradients agree (relative norm error)."""
    from peft import LoraConfig, get_peft_model

    cfg, model = _tiny_4bit(family, *quantization)
    original = [p.detach().clone() for p in model.parameters() if p.dim() == 3]
    assert models.quantize_experts(model, cfg.peft)
    for weight, stored in zip(original, experts.quantized(model), strict=True):  # 4-bit error on Gaussian weights
        assert stored.quant_state.quant_type == cfg.peft.bnb_4bit_quant_type
        assert stored.quant_state.nested == cfg.peft.bnb_4bit_use_double_quant
        error = (stored.dequantize() - weight).abs().mean() / weight.abs().mean()
        assert error <= 0.15  # measured 0.09 (NF4), 0.12 (FP4)
    torch.manual_seed(0)
    lora = LoraConfig(r=4, target_modules="all-linear", lora_dropout=0, init_lora_weights=False)  # B != 0
    model = get_peft_model(model, lora)
    batch = {"input_ids": torch.randint(0, 500, (2, 12))}
    through_4bit = _lora_gradients(model, batch)
    assert experts.dequantize(model) == 2 * len(adapters.fused_experts(model.base_model.model))
    reference = _lora_gradients(model, batch)
    assert through_4bit and through_4bit.keys() == reference.keys()
    for name, grad in reference.items():
        error = (through_4bit[name] - grad).norm() / grad.norm()
        assert grad.norm() > 0 and error <= 0.02, f"{name}: relative error {error:.3g}"


def test_quantize_experts_false_keeps_them_in_full_precision_and_warns(capsys):
    cfg, model = _tiny_4bit("qwen3_moe", "peft.quantize_experts=false")
    models.prepare_experts(model, cfg.peft, cfg.model.name_or_path)
    assert not experts.quantized(model) and any(p.dim() == 3 and p.dtype == torch.float32 for p in model.parameters())
    assert "ft: warning: bitsandbytes leaves the fused MoE experts" in capsys.readouterr().out
    for strategy in ("fsdp_qlora", "zero2", "ddp"):  # FSDP cannot shard them: refused in one line
        family = ["model.tiny.family=qwen3_moe", "peft=qlora", "peft.modules_to_save=null"]
        sharded = config.compose([*SMALL, *family, f"distributed={strategy}"])
        if strategy != "fsdp_qlora":
            rules.check_loaded_model(sharded, model)
            continue
        with pytest.raises(FtError, match="peft.quantize_experts=false"):
            rules.check_loaded_model(sharded, model)


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_trains_with_the_experts_in_4bit(tmp_path):
    """DDP broadcasts rank 0's parameters at the start, which cannot write into 4-bit experts: ft leaves
    them out of it (every rank quantized the same weights)."""
    run = run_ft(
        "train",
        *FAST,
        "model.tiny.family=qwen3_moe",
        "peft=qlora",
        "distributed=ddp",
        "distributed.num_processes=2",
        f"distributed.main_process_port={free_port()}",
        f"training.output_dir={tmp_path}",
        "training.run_name=ddp",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "world size 2" in run.stdout and "identical on every rank" in run.stdout
    assert run.stdout.count("fused MoE experts of tiny in 4-bit nf4") == 2


def test_a_run_saved_before_quantize_experts_reloads_its_experts_in_full_precision(tmp_path):
    from ft.config import saved

    cfg = config.compose(["peft=qlora"])
    text = saved.to_yaml(cfg)
    assert "quantize_experts: true" in text
    (tmp_path / "config.yaml").write_text(text.replace("  quantize_experts: true\n", ""))
    assert loading.load_config(tmp_path).peft.quantize_experts is False
    (tmp_path / "config.yaml").write_text(text)
    assert loading.load_config(tmp_path).peft.quantize_experts is True
