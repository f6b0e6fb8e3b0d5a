"""llama.cpp's converters and quantizer, driven in-process.

The converters (convert_hf_to_gguf.py with its `conversion` package, convert_lora_to_gguf.py and the
`gguf` package they were released with) are not part of llama-cpp-python's wheel; `make install-export`
copies them out of the same llama-cpp-python source release whose library ft loads, so converter and
runtime agree on the file format. `llama_cpp=PATH` (or FT_LLAMA_CPP) points at a llama.cpp checkout instead.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

from ft.errors import FtError

CONVERTER = "convert_hf_to_gguf.py"
LORA_CONVERTER = "convert_lora_to_gguf.py"
# What the converter writes itself, and what llama.cpp's quantizer makes from its 16-bit output
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZER_TYPES = ("q4_k_m", "q5_k_m", "q6_k", "q4_0")


def find(explicit: str | None) -> Path:
    """The directory holding llama.cpp's converters: llama_cpp=PATH, $FT_LLAMA_CPP, or the one
    `make install-export` put in this environment."""
    candidates = [explicit] if explicit else [os.environ.get("FT_LLAMA_CPP"), Path(sys.prefix) / "share" / "llama.cpp"]
    for candidate in filter(None, candidates):
        root = Path(candidate).expanduser()
        if (root / CONVERTER).is_file() and (root / "gguf-py").is_dir():
            return root
    where = f"llama_cpp={explicit} holds" if explicit else "this environment has"
    raise FtError(
        f"{where} no llama.cpp converter ({CONVERTER} and gguf-py/): run `make install-export`, or pass "
        "llama_cpp=PATH to a llama.cpp checkout"
    )


def _conversion(root: Path):
    """llama.cpp's `conversion` package, with the `gguf` package from the same release first on the path
    (what convert_hf_to_gguf.py itself does)."""
    for path in (root, root / "gguf-py"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import conversion

    logging.getLogger("hf-to-gguf").setLevel(logging.WARNING)
    return conversion


def architecture(root: Path, config: dict) -> str:
    """The config's architecture if llama.cpp converts it; else FtError naming it."""
    conversion = _conversion(root)
    architecture = (config.get("architectures") or ["?"])[0]
    try:
        conversion.get_model_class(architecture)
    except NotImplementedError:
        raise FtError(
            f"llama.cpp's converter does not support {architecture}: export format=merged and serve it with "
            "transformers, vLLM or SGLang"
        ) from None
    return architecture


def convert_model(
    root: Path, model_dir: Path, out_file: Path, file_type: str, pre_tokenizer: str | None, name: str
) -> None:
    """Write model_dir (a transformers model directory) as a GGUF of file_type (CONVERTER_TYPES), named
    `name` (general.name: what llama.cpp and Ollama show, and what some of llama.cpp's per-model
    tokenizer settings go by).

    llama.cpp recognizes a BPE tokenizer's pre-tokenizer by hashing the token ids of a fixed text, so a
    tokenizer it has no hash for (one trained locally, like ft's tiny ones) stops the converter;
    pre_tokenizer names llama.cpp's pre-tokenizer for it, and the parity check proves the choice."""
    import torch

    conversion = _conversion(root)
    import gguf

    hparams = conversion.ModelBase.load_hparams(model_dir, False)
    model_class = conversion.get_model_class(conversion.get_model_architecture(hparams, conversion.ModelType.TEXT))
    if pre_tokenizer:
        named = {"model_arch": model_class.model_arch, "get_vocab_base_pre": lambda self, _: pre_tokenizer}
        model_class = type(model_class.__name__, (model_class,), named)
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    try:
        with torch.inference_mode():
            model_class(model_dir, file_types[file_type], out_file, model_name=name).write()
    except NotImplementedError as e:
        if "pre-tokenizer" not in str(e):
            raise FtError(f"llama.cpp's converter cannot convert this model: {e}") from None
        raise FtError(
            "llama.cpp's converter does not recognize this tokenizer's pre-tokenizer (it knows released "
            "tokenizers by a hash of their output): pass pre_tokenizer=NAME (llama.cpp's name for the split it "
            "uses, e.g. llama-bpe, qwen2, gpt-2); the parity check then verifies the token ids"
        ) from None


def convert_adapter(root: Path, adapter_dir: Path, base_dir: Path, out_file: Path, file_type: str) -> None:
    """Write a PEFT LoRA adapter as a GGUF LoRA with llama.cpp's convert_lora_to_gguf.py (a script with no
    importable entry point, so run as one)."""
    command = [sys.executable, str(root / LORA_CONVERTER), str(adapter_dir), "--base", str(base_dir)]
    command += ["--outfile", str(out_file), "--outtype", file_type]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise FtError(f"llama.cpp's LoRA converter failed on {adapter_dir}: {last}")


def quantize(in_file: Path, out_file: Path, quant: str) -> None:
    """llama.cpp's quantizer (llama_model_quantize): in_file (16-bit GGUF) to out_file as quant."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(in_file).encode(), str(out_file).encode(), params) != 0:
        raise FtError(f"llama.cpp could not quantize {in_file} to {quant}")
