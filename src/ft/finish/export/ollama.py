"""What sits beside an export: an Ollama Modelfile and the export's card (README.md) with the commands
that serve it (llama.cpp, Ollama; vLLM and SGLang for a merged directory or the run's adapter).

Ollama renders prompts with Go templates, not the Jinja template in the GGUF, so the Modelfile carries
the Go form of the chat template's style, recognized by the tokens it writes. A template in no style
listed here gets no TEMPLATE line (Ollama then picks one from the GGUF's template, or none).
"""

from pathlib import Path

# style: (the token that identifies it in a Jinja chat template, its Ollama Go template)
GO_TEMPLATES = {
    "chatml": (
        "<|im_start|>",
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
    ),
    "llama3": (
        "<|start_header_id|>",
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "mistral": (
        "[INST]",
        '{{- range .Messages }}{{ if eq .Role "user" }}[INST] {{ .Content }} [/INST]'
        '{{ else if eq .Role "assistant" }}{{ .Content }}</s>{{ end }}{{ end }}',
    ),
    "gemma": (
        "<start_of_turn>",
        '{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}\n'
        "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
    ),
    "phi3": ("<|assistant|>", "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"),
}


def template_style(chat_template: str | None) -> str | None:
    return next((style for style, (token, _) in GO_TEMPLATES.items() if token in (chat_template or "")), None)


def modelfile(
    model: str, chat_template: str | None, stop_tokens: list[str], context: int, adapter: str | None = None
) -> str:
    """An Ollama Modelfile: FROM the GGUF (for an adapter: the base GGUF, then ADAPTER), the template, stops."""
    lines = [f"FROM {model}"] + ([f"ADAPTER ./{adapter}"] if adapter else [])
    style = template_style(chat_template)
    if style:
        lines.append(f'TEMPLATE """{GO_TEMPLATES[style][1]}"""')
    lines += [f'PARAMETER stop "{token}"' for token in stop_tokens]
    lines += [f"PARAMETER num_ctx {context}", "PARAMETER temperature 0.7"]
    return "\n".join(lines) + "\n"


def card(out: Path, run_dir: Path, gguf_name: str, model: str, parity: dict | None, seconds: float) -> str:
    """The export's README.md: what was written, the commands that run it (`model`: the GGUF to pass to -m,
    the base GGUF for an adapter), and the parity table."""
    name = run_dir.name
    size_mb = (out / gguf_name).stat().st_size / 1e6
    lora = f" --lora {gguf_name}" if model != gguf_name else ""
    lines = [
        f"# {name}",
        "",
        f"Exported by `ft export` from the run `{run_dir}`: `{gguf_name}` ({size_mb:.1f} MB) in {seconds:.0f} s.",
        "",
        "## Run it",
        "",
        "```bash",
        f"llama-cli -m {model}{lora} -cnv            # chat in the terminal (llama.cpp)",
        f"llama-server -m {model}{lora} --jinja      # OpenAI-compatible server on :8080, the GGUF's chat template",
        f"ollama create {name} -f Modelfile && ollama run {name}",
        "```",
        "",
    ]
    if parity:
        lines += ["## Parity with transformers", "", _parity_table(parity)]
    return "\n".join(lines) + "\n"


def serving_card(out: Path, run_dir: Path, base_model: str) -> str:
    """The card of format=merged: the merged model and the run's adapter, each as vLLM and SGLang serve it."""
    name = run_dir.name
    return "\n".join(
        [
            f"# {name} (merged)",
            "",
            f"Exported by `ft export format=merged` from the run `{run_dir}`: the base `{base_model}` with the adapter "
            "folded in, the run's tokenizer and chat template, and generation_config.json with the stop tokens.",
            "",
            "## Serve it",
            "",
            "```bash",
            f"vllm serve {out} --served-model-name {name}",
            f"python -m sglang.launch_server --model-path {out} --served-model-name {name}",
            "```",
            "",
            "Or serve the base with the unmerged adapter as a LoRA module (several adapters can share one base):",
            "",
            "```bash",
            f"vllm serve {base_model} --enable-lora --lora-modules {name}={run_dir} "
            f"--chat-template {out}/chat_template.jinja",
            f"python -m sglang.launch_server --model-path {base_model} --enable-lora --lora-paths {name}={run_dir}",
            "```",
            "",
        ]
    )


def _parity_table(parity: dict) -> str:
    if "logit_error" not in parity:  # llama.cpp could not load the file
        return "Failed: " + "; ".join(parity["failures"])
    rows = [
        ("passed", parity["passed"]),
        ("prompts", parity["prompts"]),
        ("token ids equal", parity["tokens_equal"]),
        ("max logit difference / logit std", f"{parity['logit_error']:.4g} (tolerance {parity['logit_tolerance']})"),
        ("top-1 agreement", f"{parity['top1_agreement']:.1%}"),
        ("greedy continuations equal", f"{parity['greedy_equal']} of {parity['prompts']}"),
    ]
    if "exact_match" in parity:
        match = parity["exact_match"]
        both = f"{match['transformers']:.1%} / {match['llama.cpp']:.1%}"
        rows.append(("exact match (transformers / llama.cpp)", both))
    table = ["| check | result |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(table) + "\n\nThe full measurements: `parity.json`."
