"""`ft estimate`: the breakdown printed for a real 7B recipe is the manual's worked example (docs/memory.md),
and on the tiny model, grown until its own memory counts, the estimate is within a quarter of the peak that
real training runs measure."""

import json
import re
from pathlib import Path

import pytest

from conftest import assert_refused, run_ft

MEMORY_DOCS = Path(__file__).parents[1] / "docs" / "memory.md"
WORKED_EXAMPLE = ("recipe=qlora_mistral", "gpu_memory_gb=24", "device=cuda")
# The tiny model at 54.8M parameters (219 MB in fp32): its weights, gradients, optimizer state and
# activations are most of a run's peak rather than a sliver beside the ~0.5 GiB of Python and libraries.
SHAPE = [
    "model.tiny.hidden_size=1024",
    "model.tiny.intermediate_size=2752",
    "model.tiny.num_attention_heads=8",
    "model.tiny.num_key_value_heads=4",
    "model.tiny.vocab_size=4096",
]
# 2 steps of 8 packed rows of exactly 128 tokens (the batch the estimate counts), nothing else run: the peak
# is the second step's, with activations and gradients beside the optimizer state the first step created
STEPS = [
    "training.max_steps=2",
    "training.per_device_train_batch_size=8",
    "training.max_length=128",
    "training.packing=true",
    "data.synthetic.num_examples=400",
    "training.eval_strategy=no",
    "data.eval_size=0",
    "training.eval_before_training=false",
    "training.report_exact_match=false",
    "training.save_strategy=no",
    "logging=none",
]
RUNS = {
    "qlora": ["recipe=tiny_qlora"],
    "full": ["recipe=tiny_full"],
    "ddp": ["recipe=default", "distributed=ddp", "distributed.num_processes=2"],
}
# glibc's malloc keeps freed blocks of up to 32 MiB for reuse, so the resident peak would hold memory torch
# already freed (0.3 GiB in these runs); this hands them back at once, so that it tracks what torch holds
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def rows(output: str) -> dict[str, float]:
    """{component: GiB} from the table `ft estimate` prints."""
    return {name: float(gib) for name, gib in re.findall(r"^  (\S.*?) +(\d+\.\d\d)(?:  |$)", output, re.MULTILINE)}


def test_qlora_mistral_prints_the_worked_example_of_the_docs():
    result = run_ft("estimate", *WORKED_EXAMPLE)
    assert result.returncode == 0, result.stderr[-3000:]
    example = MEMORY_DOCS.read_text().split(f"$ python -m ft estimate {' '.join(WORKED_EXAMPLE)}\n")[1]
    assert result.stdout == example.split("```")[0]
    printed = rows(result.stdout)
    parts = ("weights", "gradients", "optimizer state", "activations")
    assert printed["model total"] == pytest.approx(sum(printed[part] for part in parts), abs=0.015)
    assert printed["total"] == pytest.approx(printed["model total"] + printed["CUDA context"], abs=0.015)


def test_the_estimate_counts_the_parameters_exactly():
    """Mistral-7B's published size, and LoRA r=16 on its seven linear layers: r x (in + out) each."""
    from ft import config
    from ft.commands import estimate
    from ft.models import memory

    cfg = config.compose(["recipe=qlora_mistral"])
    census = memory.count(cfg, estimate.model_config(cfg), "causal_lm")
    assert census.total == 7_241_732_096
    assert census.trainable == census.adapter == 32 * 16 * (8192 + 5120 + 5120 + 8192 + 3 * (4096 + 14336))
    assert census.quantizable == 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336)


def test_sharding_divides_the_state_and_ddp_doubles_the_gradients():
    """Per device, of a full fine-tune in bf16 on 4 processes (docs/memory.md: Distributed)."""
    from ft import config
    from ft.commands import estimate
    from ft.models import memory

    def rows_for(strategy: str) -> dict[str, float]:
        cfg = config.compose(["recipe=tiny_full", f"distributed={strategy}"])
        model_config = estimate.model_config(cfg)
        census = memory.count(cfg, model_config, "causal_lm")
        setting = memory.Setting("cuda", "bf16", checkpointing=True, world_size=1 if strategy == "single" else 4)
        return {row.name: row.gib for row in memory.components(cfg, model_config, census, setting, "causal_lm")}

    single, ddp, zero2, fsdp = (rows_for(strategy) for strategy in ("single", "ddp", "zero2", "fsdp"))
    assert ddp["gradients"] == 2 * single["gradients"] and ddp["weights"] == single["weights"]
    assert zero2["weights"] == single["weights"] and zero2["gradients"] == single["gradients"] / 4
    master_weights = single["weights"] * 2  # DeepSpeed's fp32 copy of the bf16 weights
    assert zero2["optimizer state"] == pytest.approx((single["optimizer state"] + master_weights) / 4)
    assert single["weights"] / 4 < fsdp["weights"] < single["weights"] / 2  # a quarter + one layer gathered
    assert fsdp["optimizer state"] == pytest.approx(single["optimizer state"] / 4)
    assert {single["activations"]} == {ddp["activations"], zero2["activations"], fsdp["activations"]}


def test_qlora_counts_the_fused_moe_experts_in_4bit_unless_told_not_to():
    from ft import config
    from ft.commands import estimate
    from ft.models import memory

    def weights(*overrides: str) -> float:
        cfg = config.compose(["recipe=tiny_qlora", "model.tiny.family=qwen3_moe", *overrides])
        model_config = estimate.model_config(cfg)
        census = memory.count(cfg, model_config, "causal_lm")
        assert census.experts > census.total / 2  # most of an MoE's parameters
        return memory.weights(cfg, census, memory.Setting("cuda", "bf16", True, 1)).gib, census.experts

    (quantized, experts), (full, _) = weights(), weights("peft.quantize_experts=false")
    assert full - quantized == pytest.approx(experts * (4 - memory.NF4_BYTES[True]) / memory.GIB)


@pytest.mark.slow
def test_every_language_model_recipe_is_estimated():
    """On a GPU, so that the 7-8B recipes' defaults (bf16, checkpointing) apply; each within an 80 GB card."""
    from ft import config
    from ft.commands import estimate
    from ft.config import registry

    for name in config.recipe_descriptions():
        cfg = config.compose([f"recipe={name}"])
        if registry.get(cfg.task).head not in ("causal_lm", "sequence_classification"):
            continue
        printed = rows(estimate.estimate(cfg, estimate.EstimateOptions(device="cuda")))
        assert 0 < printed["total"] < 80, (name, printed)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["gpu_memory_gb=0"], ["estimate: gpu_memory_gb must be > 0, got 0.0"]),
        (["device=tpu"], ["estimate: device=tpu is not one of auto, cuda, cpu"]),
        (["recipe=tiny_sd_lora"], ["estimate sizes language models; task=text_to_image"]),
        (["training.precision=bf16", "device=cpu"], ["training.precision=bf16 needs a GPU"]),
        (["distributed=zero3", "device=cuda"], ["distributed=zero3 shards its state", "distributed.num_processes=N"]),
    ],
)
def test_bad_input_is_one_line_with_exit_2(args, expected, capsys):
    from ft import cli

    assert_refused(cli.main(["estimate", *args]), capsys.readouterr().err, *expected)


def test_a_model_without_a_config_offline_is_one_line_with_exit_2():
    result = run_ft("estimate", "model.name_or_path=nobody/no-such-model", "device=cuda")
    assert_refused(result.returncode, result.stderr, "config.json is not available offline", alone=False)


@pytest.mark.slow
# plain LoRA is the per-process run of "ddp" (the default recipe), so it is measured there, not twice
@pytest.mark.parametrize("run", ["qlora", "full", pytest.param("ddp", marks=pytest.mark.distributed)])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(run, tmp_path):
    """The total against the run's resident peak; and the model's share (the estimate without its runtime
    row, which it measures in its own process) against the peak less that runtime, so that wrong arithmetic
    for the model fails even where the runtime is a large part of the peak."""
    overrides = [*RUNS[run], *SHAPE, *STEPS]
    trained = run_ft("train", *overrides, f"training.output_dir={tmp_path}", env_extra=ALLOCATOR)
    assert trained.returncode == 0, trained.stderr[-3000:]
    measured = json.loads(next(tmp_path.glob("*/all_results.json")).read_text())["cpu_peak_rss_gb"]
    result = run_ft("estimate", *overrides, "device=cpu", env_extra=ALLOCATOR)
    assert result.returncode == 0, result.stderr[-3000:]
    estimated = rows(result.stdout)
    report = f"{run}: estimated {estimated}, measured peak {measured} GiB"
    assert estimated["total"] == pytest.approx(measured, rel=0.25), report
    assert estimated["model total"] == pytest.approx(measured - estimated["runtime"], rel=0.25), report
    print(report)
