"""The parity check: a GGUF loaded by llama.cpp against the merged transformers model it came from.

On a few held-out prompts, rendered by the run's chat template:
- metadata: the GGUF's chat template, EOS and stop tokens are the tokenizer's;
- tokens: llama.cpp's token ids equal the transformers tokenizer's (the rendered prompt, and a raw text
  with the BOS each adds on its own);
- logits: at every prompt position, the largest |difference| of the next-token logits relative to the
  spread (std) of transformers' logits; its 95th percentile over positions within TOLERANCES for the file
  type (a percentile, because quantized MoE routers pick other experts at a few positions); the maximum
  and the top-1 agreement are reported;
- text: greedy continuations token for token (required where EXACT_GREEDY; reported otherwise).
"""

import numpy as np

# The 95th percentile over prompt positions of max |logit difference| / std(logits), per file type: about
# twice the worst of the eight tiny families (docs/export.md). The 16-bit checks are the precise ones; the
# quantized ones catch a broken conversion (a wrong scale or RoPE gives 3 and more) but not small drifts.
TOLERANCES = {
    "f32": 0.01, "f16": 0.02, "bf16": 0.08, "q8_0": 0.2, "q6_k": 0.2, "q5_k_m": 1.0, "q4_k_m": 1.0, "q4_0": 2.0,
}  # fmt: skip
EXACT_GREEDY = ("f32", "f16")
RAW_TEXT = "Hello world: 12 + 34"


_LOAD_ERRORS: list[str] = []


def _collect_errors(level: int, text: bytes, _) -> None:
    if level == 4:  # GGML_LOG_LEVEL_ERROR (ggml.h); the rest of llama.cpp's log is dropped
        _LOAD_ERRORS.append(text.decode(errors="replace").strip())


_log_callback = None  # llama.cpp's log callback, referenced while llama.cpp may call it


def _llama(gguf_file, context: int, lora_file=None):
    """llama.cpp's model, or ValueError with llama.cpp's own error line."""
    import ctypes
    import os

    import llama_cpp

    global _log_callback
    _log_callback = llama_cpp.llama_log_callback(_collect_errors)
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    _LOAD_ERRORS.clear()
    try:
        return llama_cpp.Llama(
            model_path=str(gguf_file),
            lora_path=str(lora_file) if lora_file else None,
            n_ctx=context,
            logits_all=True,
            n_threads=os.cpu_count() or 1,
            seed=0,
            verbose=False,
        )
    except ValueError:
        raise ValueError(_LOAD_ERRORS[0] if _LOAD_ERRORS else "no reason given") from None


def _metadata_problems(llm, tokenizer, stop_ids: list[int]) -> list[str]:
    import llama_cpp

    metadata = llm.metadata
    problems = []
    if not _renders_alike(tokenizer, metadata.get("tokenizer.chat_template")):
        problems.append("the GGUF's chat template renders conversations differently from the run's")
    eos = metadata.get("tokenizer.ggml.eos_token_id")
    if eos is not None and int(eos) != tokenizer.eos_token_id:
        problems.append(f"EOS id {eos} != the tokenizer's {tokenizer.eos_token_id} ({tokenizer.eos_token})")
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    for token_id in stop_ids:
        if not llama_cpp.llama_vocab_is_eog(vocab, token_id):
            problems.append(f"llama.cpp does not stop on {tokenizer.convert_ids_to_tokens(token_id)} (id {token_id})")
    return problems


PROBE = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 3?"}]


def _renders_alike(tokenizer, template: str | None) -> bool:
    """Whether `template` renders a new conversation's prompt as the run's chat template does (the texts:
    a training variant of the same template, with {% generation %} markers or earlier turns' reasoning
    kept, prompts alike)."""
    from jinja2 import TemplateError

    if not template or not tokenizer.chat_template:
        return template == tokenizer.chat_template
    for messages in (PROBE, PROBE[1:]):  # some templates refuse a system turn
        try:
            rendered = [
                tokenizer.apply_chat_template(messages, chat_template=t, tokenize=False, add_generation_prompt=True)
                for t in (tokenizer.chat_template, template)
            ]
        except TemplateError:
            continue
        return rendered[0] == rendered[1]
    return template == tokenizer.chat_template


def _greedy_transformers(model, ids: list[int], stop_ids, max_new_tokens: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=stop_ids,
            pad_token_id=stop_ids[0],
        )
    return out[0, len(ids) :].tolist()


def _greedy_llama(llm, ids: list[int], stop_ids, max_new_tokens: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    new = []
    for _ in range(max_new_tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        new.append(token)
        if token in stop_ids:
            break
        llm.eval([token])
    return new


def check(
    gguf_file, model, tokenizer, held_out: list[tuple[str, str | None]], stop_ids: list[int], file_type: str,
    max_new_tokens: int = 32, lora_file=None,
) -> dict:  # fmt: skip
    """Compare on held_out (rendered prompt, reference answer or None); the measurements (parity.json),
    with `passed` and the `failures` that name what differed. Exact match of both greedy answers is
    reported where there are reference answers."""
    import torch

    prompts = [text for text, _ in held_out]
    encoded = [tokenizer(text, add_special_tokens=False).input_ids for text in prompts]
    context = max(map(len, encoded)) + max_new_tokens + 8
    try:
        llm = _llama(gguf_file, context, lora_file)
    except ValueError as e:
        return {"file_type": file_type, "passed": False, "failures": [f"llama.cpp cannot load the GGUF ({e})"]}
    problems = _metadata_problems(llm, tokenizer, stop_ids)
    token_mismatches = [
        i for i, (text, ids) in enumerate(zip(prompts, encoded))
        if llm.tokenize(text.encode(), add_bos=False, special=True) != ids
    ]  # fmt: skip
    raw_ids = tokenizer(RAW_TEXT).input_ids  # with the special tokens each adds on its own (BOS)
    raw_equal = llm.tokenize(RAW_TEXT.encode(), add_bos=True, special=False) == raw_ids
    errors, top1_equal, positions = [], 0, 0
    greedy_equal, samples, right = 0, [], {"transformers": 0, "llama.cpp": 0}
    for (text, answer), ids in zip(held_out, encoded):
        with torch.no_grad():
            reference = model(torch.tensor([ids])).logits[0].float().numpy()
        llm.reset()
        llm.eval(ids)
        ours = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
        errors += list(np.abs(ours - reference).max(axis=-1) / reference.std())
        top1_equal += int((ours.argmax(-1) == reference.argmax(-1)).sum())
        positions += len(ids)
        expected = _greedy_transformers(model, ids, stop_ids, max_new_tokens)
        got = _greedy_llama(llm, ids, stop_ids, max_new_tokens)
        greedy_equal += got == expected
        texts = {"transformers": tokenizer.decode(expected), "llama.cpp": tokenizer.decode(got)}
        samples.append({"prompt": text, **texts})
        for side, new in (("transformers", expected), ("llama.cpp", got)):
            said = tokenizer.decode(new, skip_special_tokens=True).strip()
            right[side] += answer is not None and said == answer.strip()
    tolerance = TOLERANCES[file_type]
    result = {
        "file_type": file_type,
        "prompts": len(prompts),
        "metadata_problems": problems,
        "tokens_equal": not token_mismatches and raw_equal,
        "logit_error": float(np.percentile(errors, 95)),
        "logit_error_max": float(np.max(errors)),
        "logit_tolerance": tolerance,
        "top1_agreement": top1_equal / positions,
        "greedy_equal": greedy_equal,
        "greedy_required": file_type in EXACT_GREEDY,
        "samples": samples,
    }
    answered = sum(answer is not None for _, answer in held_out)
    if answered:
        result["exact_match"] = {side: count / answered for side, count in right.items()} | {"prompts": answered}
    failures = _failures(result, token_mismatches, raw_equal)
    result.update(passed=not failures, failures=failures)
    return result


def _failures(result: dict, token_mismatches: list[int], raw_equal: bool) -> list[str]:
    failures = list(result["metadata_problems"])
    if token_mismatches:
        differing = f"{len(token_mismatches)} of {result['prompts']}"
        failures.append(f"token ids differ from the tokenizer's on {differing} prompts")
    if not raw_equal:
        failures.append(f"token ids of the raw text {RAW_TEXT!r} (with the BOS each adds) differ")
    if result["logit_error"] > result["logit_tolerance"]:
        failures.append(
            f"logits differ by {result['logit_error']:.3g} of their spread (tolerance for {result['file_type']}: "
            f"{result['logit_tolerance']})"
        )
    if result["greedy_required"] and result["greedy_equal"] < result["prompts"]:
        differing = result["prompts"] - result["greedy_equal"]
        failures.append(f"greedy text differs on {differing} of {result['prompts']} prompts")
    return failures
