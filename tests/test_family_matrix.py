"""Every real family (`model.tiny.family`) x LoRA on all linear layers, and QLoRA and DoRA on one dense and
one MoE family: trains two steps through the CLI's entry function in-process, saves, reloads (logits within
1e-6), merges (1e-4; QLoRA into its dequantized base, 2e-2 relative), and serves with the template it trained
with. Every PEFT method on ft's own tiny Llama is tests/test_peft.py's. The manual's family table
(docs/generate.py writes it from ft.models.families at `make docs`) must be what these runs found.
"""

import contextlib
import io
import json
import re

import pytest

from ft import cli, config
from ft.data import templates
from ft.finish import generate, loading
from ft.finish.export.command import ExportOptions, export
from ft.finish.export.parity import TOLERANCES
from ft.models import experts, families
from ft.run import callbacks
from test_config import docs_generator
from test_peft import _Capture, _logits

pytestmark = pytest.mark.slow

FAMILIES = list(families.FAMILIES)
METHODS = {"LoRA": [], "QLoRA": ["peft=qlora"], "DoRA": ["peft=dora"]}
RUNS = [(family, method) for family in FAMILIES for method in docs_generator().methods_run(family)]
ATTENTION_ONLY = "peft.target_modules=[q_proj,k_proj,v_proj,o_proj]"  # PEFT has no DoRA for fused experts
FAST = [
    "model.tiny.hidden_size=64",
    "model.tiny.intermediate_size=128",
    "model.tiny.num_hidden_layers=2",
    "model.tiny.vocab_size=512",
    "data.synthetic.num_examples=16",
    "data.eval_size=0",
    "training.eval_strategy=no",
    "training.eval_before_training=false",
    "training.save_strategy=no",
    "logging=none",
    "training.max_steps=2",
    "training.per_device_train_batch_size=4",
    "training.max_length=256",  # Qwen2.5's template adds a default system turn
    "training.learning_rate=1e-2",  # visible updates in two steps
    "peft.lora_dropout=0",  # PEFT has no dropout on fused MoE experts
]
RESULTS: dict = {}  # (family, method) -> what the run showed, for the manual's family table


class _CaptureTemplate(_Capture):
    """Also the chat template the trainer's tokenizer held at the end of training."""

    template = None

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        super().on_train_end(args, state, control, model=model, **kwargs)
        self.template = processing_class.chat_template


def overrides(family: str, method: str) -> list[str]:
    dora_on_moe = method == "DoRA" and families.FAMILIES[family].moe
    return [f"model.tiny.family={family}", *METHODS[method], *([ATTENTION_ONLY] if dora_on_moe else [])]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(family, method) -> (run_dir, trained model, the template training used, ft's stdout)."""
    out, runs = tmp_path_factory.mktemp("families"), {}

    def get(family, method):
        if (family, method) not in runs:
            capture, printed, name = _CaptureTemplate(), io.StringIO(), f"{family}-{method}"
            build = callbacks.build
            with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
                mp.setattr(callbacks, "build", lambda cfg, run_dir: [*build(cfg, run_dir), capture])
                argv = [*FAST, *overrides(family, method), f"training.output_dir={out}", f"training.run_name={name}"]
                assert cli.main(["train", *argv]) == 0
            runs[family, method] = (out / name, capture.model.eval(), capture.template, printed.getvalue())
        return runs[family, method]

    return get


def _batch(run_dir):
    tokenizer = loading.load_tokenizer(run_dir)
    chats = [[{"role": "user", "content": "What is 12 + 30?"}], [{"role": "user", "content": "Reverse: abcdef"}]]
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


@pytest.mark.parametrize("family, method", RUNS)
def test_trains_saves_reloads_and_merges(trained, family, method):
    run_dir, model, template, printed = trained(family, method)
    cfg = loading.load_config(run_dir)
    batch = _batch(run_dir)
    expected = _logits(model, batch)

    reloaded = loading.load_model(run_dir, cfg, device_map=None)
    assert (_logits(reloaded, batch) - expected).abs().max().item() <= 1e-6

    merged = loading.load_model(run_dir, cfg, device_map=None, dequantize=True).merge_and_unload()
    diff = (_logits(merged, batch) - expected).abs().max().item()
    if method == "QLoRA":  # merged into the dequantized base vs the quantized adapter model
        assert diff / expected.abs().max().item() <= 2e-2, diff
    else:
        assert diff <= 1e-4, diff

    # serving uses the template training used: the tokenizer saved with the run carries it
    assert loading.load_tokenizer(run_dir).chat_template == template
    fused = [p for p in model.parameters() if p.dim() == 3]  # transformers 5's fused MoE experts
    RESULTS[family, method] = {
        "mask method": re.search(r"ft: assistant masks: (.+)", printed).group(1),
        "experts 4-bit": len(experts.quantized(model)) == len(fused) if fused else None,
        "warned": "leaves the fused MoE experts" in printed,
        "target": "attention only" if ATTENTION_ONLY in overrides(family, method) else "all linear",
    }
    if method == "QLoRA" and families.FAMILIES[family].moe:  # ft quantizes them (peft.quantize_experts)
        assert RESULTS[family, method]["experts 4-bit"] is True and not RESULTS[family, method]["warned"]


@pytest.mark.parametrize("family", FAMILIES)
def test_exports_a_gguf_that_llama_cpp_runs_as_transformers_does(trained, family, tmp_path):
    """`ft export format=gguf` at f16 and q8_0: llama.cpp's converter, then llama.cpp itself against the merged
    transformers model on 5 prompts: the same token ids, chat template and stop tokens, logits within the
    file type's tolerance, and at f16 the same greedy continuations."""
    run_dir = trained(family, "LoRA")[0]
    for quant in ("f16", "q8_0"):
        out = export(ExportOptions(run_dir=str(run_dir), quant=quant, out=str(tmp_path / quant)))
        parity = json.loads((out / "parity.json").read_text())
        assert parity["passed"] and parity["tokens_equal"] and not parity["metadata_problems"], parity
        assert parity["logit_error"] <= TOLERANCES[quant] and parity["prompts"] == 5
        assert (out / f"model-{quant}.gguf").stat().st_size > 0
    assert parity["top1_agreement"] >= 0.95
    assert json.loads((tmp_path / "f16" / "parity.json").read_text())["greedy_equal"] == 5


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_prompts_with_the_training_template_and_stops(trained, family, capsys):
    """`ft generate` renders the prompt with the run's template (the card's snippet loads the same
    tokenizer) and stops on the family's end-of-turn token."""
    run_dir, _, template, _ = trained(family, "LoRA")
    options = generate.GenerateOptions(
        run_dir=str(run_dir), prompt="What is 2 + 2?", max_new_tokens=3, show_prompt=True
    )
    session = generate.Session(run_dir)
    generate.generate(options)
    shown = json.loads(re.search(r"ft: prompt (.+)", capsys.readouterr().err).group(1))
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    assert shown == session.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, chat_template=template
    )
    end_of_turn = session.tokenizer.convert_tokens_to_ids(families.FAMILIES[family].end_of_turn)
    assert end_of_turn in session._stop_ids()
    card = (run_dir / "README.md").read_text()
    assert "AutoTokenizer.from_pretrained" in card and "apply_chat_template" in card


def family_table() -> str:
    lines = [
        "| family | architecture | chat template | assistant masks | methods that train, save, reload, merge | "
        "MoE experts 4-bit under QLoRA |",
        "|---|---|---|---|---|---|",
    ]
    for family in FAMILIES:
        f = families.FAMILIES[family]
        runs = {method: RESULTS[family, method] for method in METHODS if (family, method) in RESULTS}
        methods = ", ".join(
            m + (" (attention only)" if r["target"] == "attention only" else "") for m, r in runs.items()
        )
        if "QLoRA" in runs:
            quantized = runs["QLoRA"]["experts 4-bit"]
            experts = "—" if quantized is None else "yes (`peft.quantize_experts`)" if quantized else "no"
        else:
            experts = "QLoRA not run here" if f.moe else "—"
        lines.append(
            f"| {family} | {f.config_class} | {f.template_source} | {runs['LoRA']['mask method']} | {methods} | "
            f"{experts} |"
        )
    return "\n".join(lines)


def test_the_manuals_family_table_is_the_matrix_result():
    if len(RESULTS) < len(RUNS):
        pytest.skip("needs the whole matrix in this session")
    assert {r["mask method"] for r in RESULTS.values()} <= {templates.MARKERS, templates.TRL_VARIANT, templates.PREFIX}
    assert docs_generator().family_matrix() == family_table(), (
        "docs/generate.py's family table (model families page) differs from what the runs found: fix the generator "
        "or ft.models.families"
    )


def test_config_names_every_family():
    assert config.compose(["model.tiny.family=qwen3_moe"]).model.tiny.family == "qwen3_moe"
