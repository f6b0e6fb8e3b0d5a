"""`ft export`: checks every input first, writes into a temporary directory beside `out`, renames it
into place when done. A GGUF whose parity check fails is kept at `out` for inspection, and the command
exits 1 naming what differed."""

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtCheckFailed, FtError
from ft.finish import loading
from ft.finish.export import llama_cpp, ollama
from ft.finish.merge import check_mergeable, merge_into
from ft.options import option

TASK_FORMATS = ["kohya"]  # written by the run's task (Task.exports), not by llama.cpp or transformers
FORMATS = ["gguf", "gguf-adapter", "merged", *TASK_FORMATS]
QUANTS = [*llama_cpp.CONVERTER_TYPES, *llama_cpp.QUANTIZER_TYPES]
# What a tiny model's tokenizer (ft.models.tiny: single digits, then GPT-2's byte-level split) is in
# llama.cpp's terms: its BPE merges never cross the digit boundaries, so GPT-2's split gives the same ids.
TINY_PRE_TOKENIZER = "gpt-2"
FALLBACK_PROMPTS = [
    "What is 2 + 3?",
    "Name three colors.",
    "Write one sentence about the sea.",
    "Reverse the letters: abcdef",
    "Sort these words: pear apple fig",
]


@dataclass(kw_only=True)
class ExportOptions:
    run_dir: str = option(help="the run directory `ft train` printed", metavar="DIR")
    format: str = option(
        "gguf",
        choices=FORMATS,
        help="gguf: the merged model for llama.cpp/Ollama/LM Studio; gguf-adapter: the LoRA alone as a GGUF LoRA "
        "(llama.cpp --lora, Ollama ADAPTER); merged: a transformers directory (vLLM, SGLang); kohya: a text-to-image "
        "run's LoRA in kohya's format (AUTOMATIC1111, Forge, ComfyUI)",
    )
    quant: str = option(
        "q8_0",
        choices=QUANTS,
        help="the GGUF's type: f32/f16/bf16/q8_0 written by the converter, the others by llama.cpp's quantizer; "
        "gguf-adapter takes the converter's",
    )
    out: str | None = option(
        None, help="the directory to write; unset: <run_dir>/export-<format>[-<quant>]", metavar="PATH"
    )
    parity: bool = option(True, help="load the GGUF in llama.cpp and compare it with the merged transformers model")
    prompts: int = option(5, ge=1, help="held-out prompts the parity check compares (the run's eval split)")
    max_new_tokens: int = option(32, ge=1, help="tokens of each greedy continuation the parity check compares")
    pre_tokenizer: str | None = option(
        None, help="llama.cpp's name for a tokenizer's pre-tokenizer it does not recognize (e.g. llama-bpe, qwen2)"
    )
    base_gguf: str | None = option(
        None,
        help="gguf-adapter: the base GGUF its parity check applies the adapter to; unset: the base, converted",
        metavar="PATH",
    )
    llama_cpp: str | None = option(
        None,
        help="a llama.cpp checkout whose converters to use; unset: the ones `make install-export` installed",
        metavar="PATH",
    )


def _checked(options: ExportOptions):
    """(run_dir, cfg, out, tool): every refusal before anything is written. tool: the root of llama.cpp's
    converters (gguf formats), the task's exporter (its own formats) or None (merged)."""
    run_dir = loading.check_run_dir(options.run_dir)
    if options.format in TASK_FORMATS:
        return _checked_task_format(options, run_dir)
    cfg = check_mergeable(run_dir)
    name = f"export-{options.format}" + ("" if options.format == "merged" else f"-{options.quant}")
    out = Path(options.out).expanduser() if options.out else run_dir / name
    if out.exists():
        raise FtError(f"{out} already exists: choose another out=PATH or remove it")
    if options.format == "merged":
        return run_dir, cfg, out, None
    if options.format == "gguf-adapter" and options.quant not in llama_cpp.CONVERTER_TYPES:
        takes = ", ".join(llama_cpp.CONVERTER_TYPES)
        raise FtError(f"format=gguf-adapter takes quant={takes} (what the converter writes), not {options.quant}")
    if options.format == "gguf-adapter" and cfg.peft.method not in ("lora", "qlora", "dora"):
        raise FtError(f"format=gguf-adapter needs a LoRA adapter; this run's is peft.method={cfg.peft.method}")
    if options.format == "gguf-adapter" and cfg.peft.modules_to_save:
        raise FtError(
            f"format=gguf-adapter: this run also trains {list(cfg.peft.modules_to_save)} in full "
            "(peft.modules_to_save), which a GGUF LoRA cannot carry: export format=gguf, the merged model"
        )
    if options.base_gguf and not Path(options.base_gguf).expanduser().is_file():
        raise FtError(f"base_gguf={options.base_gguf}: no such file")
    root = llama_cpp.find(options.llama_cpp)
    config = json.loads((Path(loading.base_model_path(cfg)) / "config.json").read_text())
    llama_cpp.architecture(root, config)
    return run_dir, cfg, out, root


def _checked_task_format(options: ExportOptions, run_dir: Path):
    from ft.config import registry

    cfg = loading.load_config(run_dir)
    exporter = registry.get(cfg.task).exports.get(options.format)
    if exporter is None:
        owners = " or ".join(f"task={t.name}" for t in registry.tasks().values() if options.format in t.exports)
        raise FtError(
            f"format={options.format} is for {owners} runs; this run is task={cfg.task}: export format=gguf or merged"
        )
    out = Path(options.out).expanduser() if options.out else run_dir / f"export-{options.format}"
    if out.exists():
        raise FtError(f"{out} already exists: choose another out=PATH or remove it")
    return run_dir, cfg, out, exporter


def export(options: ExportOptions) -> Path:
    run_dir, cfg, out, tool = _checked(options)
    if options.format in TASK_FORMATS:
        tool(run_dir, cfg, out)
        return out
    started = time.monotonic()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        if options.format == "merged":
            merge_into(run_dir, cfg, tmp)
            (tmp / "README.md").write_text(ollama.serving_card(out, run_dir, loading.base_model_path(cfg)))
            os.rename(tmp, out)
            return out
        result = _gguf(options, run_dir, cfg, tmp, tool, started)
        os.rename(tmp, out)
    except OSError as e:
        raise FtError(f"cannot write {out} ({e.strerror}): choose a writable out=PATH") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if result and not result["passed"]:
        raise FtCheckFailed(f"the parity check failed: {'; '.join(result['failures'])} (files kept in {out})")
    return out


def _gguf(options: ExportOptions, run_dir: Path, cfg, tmp: Path, root: Path, started: float) -> dict | None:
    base = Path(loading.base_model_path(cfg))
    pre_tokenizer = options.pre_tokenizer or (TINY_PRE_TOKENIZER if cfg.model.name_or_path == "tiny" else None)
    merged = tmp / "merged"
    model, tokenizer = merge_into(run_dir, cfg, merged)
    quant = options.quant
    if options.format == "gguf":
        gguf_name = f"model-{quant}.gguf"
        print(f"ft: converting the merged model to {gguf_name} with llama.cpp's converter", flush=True)
        if quant in llama_cpp.CONVERTER_TYPES:
            llama_cpp.convert_model(root, merged, tmp / gguf_name, quant, pre_tokenizer, run_dir.name)
        else:
            sixteen_bit = tmp / "model-16bit.gguf"
            sixteen_bit_type = "bf16" if "bf16" in str(model.dtype) else "f16"
            llama_cpp.convert_model(root, merged, sixteen_bit, sixteen_bit_type, pre_tokenizer, run_dir.name)
            print(f"ft: quantizing to {quant} with llama.cpp", flush=True)
            llama_cpp.quantize(sixteen_bit, tmp / gguf_name, quant)
            sixteen_bit.unlink()
        check_file, lora_file = tmp / gguf_name, None
    else:
        gguf_name = f"adapter-{quant}.gguf"
        print(f"ft: converting the adapter to {gguf_name} with llama.cpp's LoRA converter", flush=True)
        llama_cpp.convert_adapter(root, run_dir, base, tmp / gguf_name, quant)
        lora_file = tmp / gguf_name
        check_file = Path(options.base_gguf).expanduser() if options.base_gguf else tmp / "base-f32.gguf"
        if not options.base_gguf:  # the adapter's own effect, measured on a lossless base
            llama_cpp.convert_model(root, base, check_file, "f32", pre_tokenizer, run_dir.name)
    result, stop_ids = None, _stop_ids(model, tokenizer)
    if options.parity:
        from ft.finish.export import parity

        print(f"ft: parity check: llama.cpp vs transformers on {options.prompts} held-out prompts", flush=True)
        result = parity.check(
            check_file, model, tokenizer, held_out(cfg, tokenizer, options.prompts), stop_ids, quant,
            options.max_new_tokens, lora_file,
        )  # fmt: skip
        (tmp / "parity.json").write_text(json.dumps(result, indent=2) + "\n")
    if check_file.parent == tmp and check_file.name.startswith("base-"):
        check_file.unlink()
    shutil.rmtree(merged)
    stop_tokens = tokenizer.convert_ids_to_tokens(stop_ids)
    context = min(max(cfg.training.max_length * 4, 2048), model.config.max_position_embeddings)
    if options.format == "gguf":
        model_gguf, adapter = f"./{gguf_name}", None
    else:  # Ollama and llama.cpp apply the adapter to a base GGUF: the one given, or one the user has
        given = options.base_gguf and str(Path(options.base_gguf).expanduser().resolve())
        model_gguf, adapter = given or "BASE.gguf", gguf_name
    modelfile = ollama.modelfile(model_gguf, tokenizer.chat_template, stop_tokens, context, adapter)
    (tmp / "Modelfile").write_text(modelfile)
    seconds = time.monotonic() - started
    card = ollama.card(tmp, run_dir, gguf_name, model_gguf.removeprefix("./"), result, seconds)
    (tmp / "README.md").write_text(card)
    print(f"ft: wrote {gguf_name} ({(tmp / gguf_name).stat().st_size / 1e6:.1f} MB)", flush=True)
    return result


def _stop_ids(model, tokenizer) -> list[int]:
    """What transformers' generation stops on: generation_config.eos_token_id (one id or a list)."""
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id]
    return list(dict.fromkeys(eos))


def held_out(cfg, tokenizer, count: int) -> list[tuple[str, str | None]]:
    """(prompt rendered with the generation prompt, the reference answer or None) for the first `count`
    rows of the run's eval split; a few fixed questions when it has none."""
    from ft import data
    from ft.data import templates

    try:
        _, rows = data.load(cfg.data, cfg.task)
    except FtError:
        rows = None
    prompts = []
    for row in list(rows.select(range(min(count, len(rows))))) if rows is not None else []:
        if "messages" in row:
            messages, tools = templates.conversation(row)
            last = messages[-1]
            answer = last["content"] if last["role"] == "assistant" else None
            messages = messages[:-1] if answer is not None else messages
        elif isinstance(row.get("prompt"), list):
            messages, tools, answer = row["prompt"], None, row.get("answer")
        else:
            messages, tools, answer = [{"role": "user", "content": str(row.get("prompt", ""))}], None, None
        prompts.append((templates.render(tokenizer, messages, generation_prompt=True, tools=tools), answer))
    for question in FALLBACK_PROMPTS[: count - len(prompts)]:
        prompts.append((templates.render(tokenizer, [{"role": "user", "content": question}], True), None))
    return prompts
