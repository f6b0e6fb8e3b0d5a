"""`ft export`: GGUF (llama.cpp's converter and quantizer), GGUF LoRA adapters and merged directories, each
checked against transformers; a broken export and bad inputs refused. Every family's GGUF is
tests/test_family_matrix.py's; the default run's, scored on its held-out prompts, is here.

Runs train once per module through the CLI's entry function in-process (ft's tiny Llama, 5 steps).
"""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import assert_refused, snapshot
from ft import cli
from ft.errors import FtError
from ft.finish import loading
from ft.finish.export import llama_cpp, parity
from ft.finish.export.command import TINY_PRE_TOKENIZER, held_out
from ft.finish.merge import merge_into
from test_peft import FAST

pytestmark = pytest.mark.slow

NO_HEAD = "peft.modules_to_save=null"  # a LoRA adapter and nothing trained in full: what a GGUF LoRA carries
RUNS = {
    "lora": [],  # the default recipe: LoRA on every linear layer, lm_head trained in full
    "lora_only": [NO_HEAD],
    "qwen_lora_only": ["model.tiny.family=qwen2_5", NO_HEAD, "training.max_length=256"],
    "qlora": ["recipe=tiny_qlora"],
    "llama_adapter": ["recipe=tiny_llama_adapter"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out, done = tmp_path_factory.mktemp("export"), {}

    def get(name):
        if name not in done:
            argv = ["train", *FAST, *RUNS[name], f"training.output_dir={out}", f"training.run_name={name}"]
            assert cli.main(argv) == 0
            done[name] = out / name
        return done[name]

    return get


def _export(run_dir, out, *pairs) -> tuple[int, dict]:
    code = cli.main(["export", f"run_dir={run_dir}", f"out={out}", *pairs])
    report = out / "parity.json"
    return code, json.loads(report.read_text()) if report.exists() else {}


def test_the_default_run_in_llama_cpp_answers_as_in_transformers(default_run, tmp_path):
    """The default run (200 steps) at q8_0: llama.cpp's greedy answers to 64 held-out prompts score within 2
    points of transformers' exact match (bench/RESULTS.md has the numbers)."""
    run_dir, _ = default_run
    code, result = _export(run_dir, tmp_path / "q8_0", "quant=q8_0", "prompts=64")
    assert code == 0 and result["passed"], result.get("failures")
    match = result["exact_match"]
    assert match["prompts"] == 64 and match["transformers"] >= 0.3, match  # the run learned: the check means something
    assert abs(match["llama.cpp"] - match["transformers"]) <= 0.02, match


def test_a_gguf_comes_with_a_modelfile_a_card_and_its_parity(runs, tmp_path):
    code, result = _export(runs("lora"), tmp_path / "f16", "quant=f16")
    assert code == 0 and result["passed"] and result["greedy_equal"] == result["prompts"] == 5, result
    assert result["exact_match"]["prompts"] == 5  # held-out prompts of the run's eval split, with their answers
    modelfile = (tmp_path / "f16" / "Modelfile").read_text().splitlines()
    assert modelfile[0] == "FROM ./model-f16.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert any(line.startswith('TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}') for line in modelfile)
    card = (tmp_path / "f16" / "README.md").read_text()
    assert "ollama create lora -f Modelfile" in card and "llama-server -m model-f16.gguf" in card
    assert "| passed | True |" in card and "| greedy continuations equal | 5 of 5 |" in card
    assert sorted(p.name for p in (tmp_path / "f16").iterdir()) == [
        "Modelfile", "README.md", "model-f16.gguf", "parity.json"
    ]  # fmt: skip


def test_k_quants_come_from_llama_cpps_quantizer(runs, tmp_path):
    code, result = _export(runs("lora"), tmp_path / "q4", "quant=q4_k_m")
    assert code == 0 and result["passed"] and result["file_type"] == "q4_k_m", result
    assert result["logit_error"] <= parity.TOLERANCES["q4_k_m"]
    assert [p.name for p in (tmp_path / "q4").glob("*.gguf")] == ["model-q4_k_m.gguf"]  # the 16-bit step removed


def test_a_qlora_run_exports_from_its_dequantized_base(runs, tmp_path):
    code, result = _export(runs("qlora"), tmp_path / "f16", "quant=f16")
    assert code == 0 and result["passed"] and result["greedy_equal"] == 5, result


@pytest.mark.parametrize("name", ["lora_only", "qwen_lora_only"])
def test_a_gguf_lora_on_the_base_gguf_is_the_merged_model(runs, name, tmp_path):
    """format=gguf-adapter: llama.cpp applies the GGUF LoRA to the base (converted in f32 for the check) and
    matches the merged transformers model: logits within the f16 tolerance, the same greedy text."""
    code, result = _export(runs(name), tmp_path / "adapter", "format=gguf-adapter", "quant=f16")
    assert code == 0 and result["passed"] and result["greedy_equal"] == 5, result
    assert result["logit_error"] <= parity.TOLERANCES["f16"]
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["Modelfile", "README.md", "adapter-f16.gguf", "parity.json"]
    assert (tmp_path / "adapter" / "Modelfile").read_text().startswith("FROM BASE.gguf\nADAPTER ./adapter-f16.gguf\n")
    assert (
        "llama-server -m BASE.gguf --lora adapter-f16.gguf --jinja" in (tmp_path / "adapter" / "README.md").read_text()
    )


def test_merged_format_is_a_plain_transformers_directory(runs, tmp_path):
    run_dir = runs("lora")
    assert cli.main(["export", f"run_dir={run_dir}", "format=merged", f"out={tmp_path / 'merged'}"]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    cfg = loading.load_config(run_dir)
    reference = loading.load_model(run_dir, cfg, device_map=None).merge_and_unload()
    ids = tokenizer("What is 2 + 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert (model(ids).logits - reference(ids).logits).abs().max().item() <= 1e-5
    assert tokenizer.chat_template == loading.load_tokenizer(run_dir).chat_template
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in [model.generation_config.eos_token_id]
    card = (tmp_path / "merged" / "README.md").read_text()
    assert f"vllm serve {tmp_path / 'merged'}" in card and f"--lora-modules lora={run_dir}" in card


def test_a_broken_export_fails_the_check_naming_what_differs(runs, tmp_path):
    """A GGUF converted from a merged directory whose chat template or EOS was tampered with, checked against
    the run: the failures name the template and the EOS id."""
    run_dir = runs("lora")
    cfg = loading.load_config(run_dir)
    model, tokenizer = merge_into(run_dir, cfg, tmp_path / "merged")
    root = llama_cpp.find(None)
    template_file = tmp_path / "merged" / "chat_template.jinja"
    template_file.write_text(template_file.read_text().replace("<|im_start|>assistant", "<|im_start|>bot"))
    config_file = tmp_path / "merged" / "tokenizer_config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"eos_token": "<|pad|>"}))
    llama_cpp.convert_model(root, tmp_path / "merged", tmp_path / "broken.gguf", "f16", TINY_PRE_TOKENIZER, "broken")
    stop_ids = [tokenizer.eos_token_id]
    result = parity.check(tmp_path / "broken.gguf", model, tokenizer, held_out(cfg, tokenizer, 2), stop_ids, "f16")
    assert not result["passed"]
    assert any("chat template renders" in failure for failure in result["failures"]), result["failures"]
    assert any("EOS id" in failure for failure in result["failures"]), result["failures"]


@pytest.mark.parametrize(
    "pre_tokenizer, failure",
    [
        ("falcon", "token ids differ"),  # a real split, not this tokenizer's
        ("no-such-split", "llama.cpp cannot load the GGUF (llama_model_load: error loading model: error loading model "
         "vocabulary: unknown pre-tokenizer type: 'no-such-split')"),
    ],
)  # fmt: skip
def test_a_wrong_pre_tokenizer_fails_with_one_line_and_keeps_the_files(runs, pre_tokenizer, failure, tmp_path, capsys):
    code, result = _export(runs("lora"), tmp_path / "wrong", "quant=f16", f"pre_tokenizer={pre_tokenizer}")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and lines[-1].startswith(f"ft: error: the parity check failed: {failure}"), lines[-3:]
    assert "Traceback" not in "\n".join(lines)
    assert not result["passed"] and (tmp_path / "wrong" / "model-f16.gguf").exists()


@pytest.mark.parametrize(
    "run, pairs, message",
    [
        ("lora", ["quant=q3"], "quant=q3 is not one of"),
        ("llama_adapter", [], "cannot merge a Llama-Adapter"),
        ("lora", ["format=gguf-adapter"], "which a GGUF LoRA cannot carry"),
        ("lora_only", ["format=gguf-adapter", "quant=q4_k_m"], "format=gguf-adapter takes quant="),
        ("lora", ["llama_cpp=/nonexistent"], "no llama.cpp converter"),
        ("lora", ["out=EXISTING"], "already exists"),
        ("lora", ["format=kohya"], "format=kohya is for task=text_to_image runs; this run is task=sft"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(runs, run, pairs, message, tmp_path, capsys):
    run_dir = runs(run)
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("mine")
    pairs = [p.replace("EXISTING", str(tmp_path / "existing")) for p in pairs]
    before, before_out = snapshot(run_dir), snapshot(tmp_path)
    code = cli.main(["export", f"run_dir={run_dir}", *pairs])
    assert_refused(code, capsys.readouterr().err, message, alone=False)
    assert snapshot(run_dir) == before and snapshot(tmp_path) == before_out


def test_an_architecture_llama_cpp_cannot_convert_is_refused():
    with pytest.raises(FtError, match="llama.cpp's converter does not support NoSuchForCausalLM"):
        llama_cpp.architecture(llama_cpp.find(None), {"architectures": ["NoSuchForCausalLM"]})
