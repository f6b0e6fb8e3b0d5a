"""Every PEFT method: train -> save -> reload -> merge on the tiny model, with numbers.

Each method trains once (module-scoped) through the CLI's entry function in-process, so the test
holds the trained model object: a test-only callback, added next to ft's own, snapshots the
trainable parameters when training starts and keeps the model when it ends.
"""

import json

import pytest
import torch
from transformers import TrainerCallback

from conftest import QUICK, assert_refused, run_ft
from ft import cli, config
from ft.errors import FtError
from ft.finish import loading
from ft.run import callbacks

pytestmark = pytest.mark.slow

FAST = [
    *QUICK,
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.per_device_train_batch_size=4",
    "training.max_length=64",
    "data.synthetic.num_examples=100",
    "training.logging_steps=1",
]
METHODS = [
    "tiny_qlora",
    "tiny_qlora_8bit",
    "tiny_ia3",
    "tiny_adalora",
    "tiny_llama_adapter",
    "tiny_dora",
    "tiny_rslora",
    "tiny_pissa",
    "tiny_loraplus",
    "tiny_full",
]
QUANTIZED = {"tiny_qlora", "tiny_qlora_8bit"}
NOT_MERGEABLE = {"tiny_llama_adapter", "tiny_full"}


class _Capture(TrainerCallback):
    def __init__(self):
        self.initial, self.model = {}, None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """recipe -> (run_dir, trained model, initial trainable params), trained on first use."""
    out, runs = tmp_path_factory.mktemp("peft"), {}

    def get(recipe):
        if recipe not in runs:
            capture = _Capture()
            build = callbacks.build
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(callbacks, "build", lambda cfg, run_dir: [*build(cfg, run_dir), capture])
                code = cli.main(
                    ["train", f"recipe={recipe}", *FAST, f"training.output_dir={out}", f"training.run_name={recipe}"]
                )
            assert code == 0
            runs[recipe] = (out / recipe, capture.model.eval(), capture.initial)
        return runs[recipe]

    return get


def _batch(run_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    return tokenizer(["What is 12 + 30?", "Reverse the letters: abcdef"], return_tensors="pt", padding=True)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.mark.parametrize("recipe", METHODS)
def test_trains_saves_and_reloads(trained, recipe):
    run_dir, model, initial = trained(recipe)
    state = json.loads((run_dir / "trainer_state.json").read_text())
    losses = [row["loss"] for row in state["log_history"] if "loss" in row]
    assert state["global_step"] == 5 and losses and all(torch.isfinite(torch.tensor(losses)))

    params = dict(model.named_parameters())
    changed = [n for n, before in initial.items() if not torch.equal(params[n].detach().float(), before)]
    assert initial and len(changed) >= 0.9 * len(initial), f"{len(changed)} of {len(initial)} trainable tensors changed"

    reloaded = loading.load_model(run_dir, loading.load_config(run_dir), device_map=None)
    batch = _batch(run_dir)
    expected = _logits(model, batch)
    diff = (_logits(reloaded, batch) - expected).abs().max().item()
    # PiSSA reloads as plain LoRA on the original base: (W - B0A0)x + BAx becomes Wx + (BA - B0A0)x, the
    # same sum in another order, so fp32 rounding allows 1e-6 relative to the logits' scale
    tolerance = 1e-6 * expected.abs().max().item() if recipe == "tiny_pissa" else 1e-6
    assert diff <= tolerance, f"reloaded logits differ by {diff}"


@pytest.mark.parametrize("recipe", sorted(set(METHODS) - NOT_MERGEABLE))
def test_merge_matches_the_adapter_model(trained, recipe, tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir, model, _ = trained(recipe)
    assert cli.main(["merge", f"run_dir={run_dir}", f"out={tmp_path / 'merged'}"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert not hasattr(merged.config, "quantization_config")
    batch = _batch(tmp_path / "merged")
    expected, actual = _logits(model, batch), _logits(merged, batch)
    diff = (actual - expected).abs().max().item()
    if recipe in QUANTIZED:  # merged into the dequantized base vs the quantized adapter model
        assert diff / expected.abs().max().item() <= 2e-2, diff
    else:
        assert diff <= 1e-4, diff


def test_cli_merge_writes_a_standalone_model_once(trained, tmp_path, capsys):
    run_dir, _, _ = trained("tiny_qlora")
    result = run_ft("merge", f"run_dir={run_dir}", f"out={tmp_path / 'm'}", warm=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".m.tmp-*"))
    assert_refused(
        cli.main(["merge", f"run_dir={run_dir}", f"out={tmp_path / 'm'}"]), capsys.readouterr().err, "already exists"
    )


@pytest.mark.parametrize(
    "recipe, message", [("tiny_llama_adapter", "cannot merge a Llama-Adapter"), ("tiny_full", "nothing to merge")]
)
def test_merge_refuses_what_cannot_be_merged(trained, recipe, message, capsys):
    run_dir, _, _ = trained(recipe)
    assert_refused(cli.main(["merge", f"run_dir={run_dir}"]), capsys.readouterr().err, message, alone=False)
    assert not (run_dir / "merged").exists()


def test_qlora_base_is_4bit_and_only_the_adapter_trains(trained):
    import bitsandbytes as bnb

    _, model, initial = trained("tiny_qlora")
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    assert all("lora_" in n or "modules_to_save" in n for n in initial), [n for n in initial if "lora_" not in n][:3]


def test_qlora_gradients_match_a_fp32_model_of_the_dequantized_weights(trained):
    run_dir, model, _ = trained("tiny_qlora")
    reference = loading.load_model(
        run_dir, loading.load_config(run_dir), device_map=None, dequantize=True
    )  # fp32 weights = the 4-bit values
    batch = _batch(run_dir)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    grads = []
    for m in (model, reference):
        names = [n for n, p in m.named_parameters() if "lora_B" in n]
        for n, p in m.named_parameters():
            p.requires_grad_(n in names)
        m.zero_grad()
        m(**batch, labels=labels).loss.backward()
        grads.append({n: p.grad.float() for n, p in m.named_parameters() if n in names})
    for n, g in grads[1].items():
        q = grads[0][n]
        rel = ((q - g).norm() / g.norm()).item()
        assert rel <= 0.02, f"{n}: relative gradient difference {rel:.4f}"


def test_adalora_rank_budget_shrinks(trained):
    run_dir, _, _ = trained("tiny_adalora")
    cfg = config.compose(["recipe=tiny_adalora"])
    saved = json.loads((run_dir / "adapter_config.json").read_text())
    ranks = {name: sum(mask) for name, mask in saved["rank_pattern"].items()}
    assert sum(ranks.values()) == cfg.peft.target_r * len(ranks) < cfg.peft.init_r * len(ranks)
    assert len(set(ranks.values())) > 1, "ranks were reallocated across layers, not cut evenly"
    budgets = [
        row["adalora_rank_budget"]
        for row in json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
        if "adalora_rank_budget" in row
    ]
    assert budgets[0] > budgets[-1] == cfg.peft.target_r * len(ranks), budgets


def test_unknown_target_modules_lists_the_linear_layers(tmp_path, capsys):
    code = cli.main(
        ["train", *FAST, "peft.target_modules=[q_proj,qkv]", f"training.output_dir={tmp_path}", "training.run_name=bad"]
    )
    assert_refused(
        code,
        capsys.readouterr().err,
        "qkv not found",
        "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj",
        alone=False,
    )
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["peft=none", "peft.load_in_4bit=true"], "full fine-tune cannot train a 4-bit"),
        (["peft=qlora", "peft.load_in_8bit=true"], "choose one"),
        (["peft=ia3", "peft.use_dora=true"], "LoRA variant"),
        (["peft=pissa", "peft.load_in_4bit=true"], "PiSSA needs full-precision"),
        (["peft=adalora", "peft.target_r=16"], "target_r <= init_r"),
    ],
)
def test_incompatible_combinations_are_rejected_before_loading(overrides, message):
    with pytest.raises(FtError, match=message):
        config.compose(overrides)


def test_qlora_without_bitsandbytes_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import machinery: "not installed"
    with pytest.raises(FtError, match="pip install"):
        config.compose(["peft=qlora"])


def test_llama_adapter_needs_llama_family_attention():
    from transformers import BertConfig, LlamaConfig

    from ft.rules import model as model_rules

    cfg = config.compose(["peft=llama_adapter"]).peft
    model_rules.check_architecture(cfg, LlamaConfig(num_hidden_layers=4), "tiny")
    with pytest.raises(FtError, match="needs Llama-family attention"):
        model_rules.check_architecture(cfg, BertConfig(num_hidden_layers=4), "bert-base")
    cfg.adapter_layers = 30
    with pytest.raises(FtError, match="has 4 layers"):
        model_rules.check_architecture(cfg, LlamaConfig(num_hidden_layers=4), "tiny")
