"""`ft eval`: measure a finished run against its untrained base on the recipe's eval split.

- eval loss and perplexity: the eval split rebuilt from config.yaml (same source, seed and split as
  training), tokenized and masked the way TRL's SFTTrainer does (assistant turns / completions
  only when training was), token-weighted, summed across processes with Accelerate's
  gather_for_metrics (which also drops the samples duplicated to even out the last batch);
- exact match on the synthetic tasks: greedy generation from the user turn, compared with the
  answer after stripping whitespace.
The untrained numbers come from the same loaded model with the adapter switched off.

lm-eval-harness is not wired in: its tasks download their datasets from the Hub at run time, which
ft's offline-first tests cannot exercise; run `lm_eval --model hf --model_args
pretrained=BASE,peft=RUN_DIR` yourself for benchmark suites.
"""

import contextlib
import functools
import math
import sys
from dataclasses import dataclass

from ft import data
from ft.config import registry
from ft.data import templates
from ft.errors import FtError
from ft.finish import loading
from ft.finish.preference_eval import shared_prefix
from ft.options import option


@dataclass(kw_only=True)
class EvalOptions:
    run_dir: str = option(help="the run directory `ft train` printed", metavar="DIR")
    max_examples: int | None = option(None, help="evaluate on the first N eval examples; unset or 0: all of them")
    batch_size: int | None = option(
        None, help="eval batch size; unset: the run's training.per_device_eval_batch_size (16 for exact match)"
    )
    exact_match_examples: int = option(64, help="eval examples scored by exact match, on synthetic data only")
    max_new_tokens: int = option(32, help="tokens generated per exact-match answer")
    base: bool = option(True, help="also measure the untrained base model")


def _features(row, tokenizer, cfg) -> dict:
    """input_ids and labels (-100 where no loss), as SFTTrainer builds them."""
    t = cfg.training
    if "messages" in row:
        assistant_only = t.assistant_only_loss
        if assistant_only:  # turns marked not to train left out, as in training
            has_markers = templates.has_markers(tokenizer.chat_template)
            out = templates.tokenize(tokenizer, row, templates.MARKERS if has_markers else templates.PREFIX)
        else:
            out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)
        ids = list(out["input_ids"])
        labels = [i if m else -100 for i, m in zip(ids, out["assistant_masks"])] if assistant_only else list(ids)
    elif "prompt" in row:
        completion = (
            row["completion"]
            if row["completion"].endswith(tokenizer.eos_token)
            else row["completion"] + tokenizer.eos_token
        )
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = tokenizer(row["prompt"] + completion)["input_ids"]
        prefix = shared_prefix(ids, prompt_ids)
        masked = t.completion_only_loss is not False
        labels = [-100] * prefix + ids[prefix:] if masked else list(ids)
    else:
        text = row["text"] if row["text"].endswith(tokenizer.eos_token) else row["text"] + tokenizer.eos_token
        ids = tokenizer(text)["input_ids"]
        labels = list(ids)
    return {"input_ids": ids[: t.max_length], "labels": labels[: t.max_length]}


def _collate(pad_id: int):
    import torch

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def eval_loss(model, dataloader, accelerator) -> tuple[float, int]:
    """Token-weighted mean loss over every process's share of the data, and the token count."""
    import torch
    import torch.nn.functional as F

    total, tokens = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for batch in dataloader:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"][:, 1:]
            losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
            per_row = torch.stack([losses.sum(dim=1).double(), (labels != -100).sum(dim=1).double()], dim=1)
            per_row = accelerator.gather_for_metrics(per_row)
            total += per_row[:, 0].sum().cpu()
            tokens += int(per_row[:, 1].sum().item())
    if tokens == 0:
        raise FtError("the eval split has no tokens that carry a loss (all masked?)")
    return total.item() / tokens, tokens


def exact_match(
    model, tokenizer, rows: list[dict], accelerator, max_new_tokens: int, batch_size: int
) -> tuple[int, int]:
    """(correct, total) over `rows` (conversations ending with the answer), split across processes."""
    import torch

    with accelerator.split_between_processes(rows) as mine:
        answers = generate_answers(model, tokenizer, mine, accelerator.device, max_new_tokens, batch_size)
        correct = sum(is_right(answer, row) for answer, row in zip(answers, mine))
    counts = accelerator.gather(torch.tensor([[correct, len(mine)]], device=accelerator.device)).sum(dim=0)
    return int(counts[0]), int(counts[1])


def is_right(answer: str, row: dict) -> bool:
    return answer.strip() == row["messages"][-1]["content"].strip()


def call_question(row: dict, tokenizer) -> dict:
    """A conversation with tool calls asked up to its first call: a row whose last turn is that call as the
    template renders it (function and arguments), up to the end-of-turn token, as an answer to match."""
    messages, tools = templates.conversation(row)
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    before = templates.render(tokenizer, messages[:first], generation_prompt=True, tools=tools)
    through = templates.render(tokenizer, messages[: first + 1], tools=tools)
    call = through[len(before) :].split(tokenizer.eos_token)[0]
    return {"messages": [*row["messages"][:first], {"role": "assistant", "content": call}], "tools": row.get("tools")}


def generate_answers(model, tokenizer, rows: list[dict], device, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers to the user turns of `rows` (conversations ending with the answer)."""
    import torch

    answers = []
    tokenizer.padding_side = "left"  # generation continues the prompt's right end
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        prompts = [templates.render(tokenizer, m[:-1], True, tools) for m, tools in map(templates.conversation, chunk)]
        inputs = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        answers += tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return answers


@contextlib.contextmanager
def untrained(model):
    """The same model with the adapter switched off (PEFT's disable_adapter also bypasses
    modules_to_save), i.e. the base model training started from."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield None


def evaluate(options: EvalOptions) -> dict:
    """{'trained': {...}, 'base': {...}} with loss, perplexity, tokens, and exact_match where it applies."""
    import torch
    from accelerate import Accelerator

    run_dir = loading.check_run_dir(options.run_dir)
    max_examples, batch_size = options.max_examples, options.batch_size
    cfg = loading.load_config(run_dir)
    task = registry.get(cfg.task)
    if task.evaluate is not None:  # a task that scores its runs itself (task=vlm: answers about images)
        return task.evaluate(options, cfg, run_dir)
    if task.evaluation is None:
        raise FtError(f"ft eval does not score task={task.name} runs: {task.no_evaluation}")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    _, eval_rows = data.load(cfg.data, cfg.task)
    if eval_rows is None:
        raise FtError(
            "the run's recipe has no eval split (data.eval_size=0, no data.eval_split): nothing to evaluate on"
        )
    if max_examples:
        eval_rows = eval_rows.select(range(min(max_examples, len(eval_rows))))
    tokenizer = loading.load_tokenizer(run_dir)
    model = loading.load_model(run_dir, cfg, device_map={"": accelerator.device})
    if task.evaluation == "pairs":
        return _evaluate_pairs(model, tokenizer, eval_rows, cfg, run_dir, batch_size, options.base)
    if cfg.data.format == "prompts":  # GRPO's, RLOO's, distill's: scored with their reference answers
        eval_rows = _prompts_as_conversations(eval_rows)
    features = [_features(row, tokenizer, cfg) for row in eval_rows]
    from torch.utils.data import DataLoader

    loader = accelerator.prepare(
        DataLoader(
            features,
            batch_size=batch_size or cfg.training.per_device_eval_batch_size,
            collate_fn=_collate(tokenizer.pad_token_id),
        )
    )
    match_rows = []
    if cfg.data.source == "synthetic" and options.exact_match_examples > 0:
        match_rows = [eval_rows[i] for i in range(min(options.exact_match_examples, len(eval_rows)))]

    def measure(m) -> dict:
        loss, tokens = eval_loss(m, loader, accelerator)
        result = {"loss": loss, "perplexity": math.exp(min(loss, 700)), "tokens": tokens}
        if match_rows:
            correct, total = exact_match(
                m, tokenizer, match_rows, accelerator, options.max_new_tokens, batch_size or 16
            )
            result.update(exact_match=correct / total, exact_match_correct=correct, exact_match_total=total)
        return result

    results = {"examples": len(eval_rows), "trained": measure(model)}
    if options.base:
        with untrained(model) as untrained_model:
            if untrained_model is not None:
                results["base"] = measure(untrained_model)
    if options.base and "base" not in results:  # a full fine-tune: load the base weights themselves
        from ft import models

        base_model = models.load_model(cfg.model, model.dtype, device_map={"": accelerator.device}).eval()
        results["base"] = measure(base_model)
    if accelerator.is_main_process:
        print_report(results, cfg, run_dir)
    return results


def _evaluate_pairs(model, tokenizer, eval_rows, cfg, run_dir, batch_size, base: bool) -> dict:
    from ft.finish import preference_eval

    rows, size = list(eval_rows), batch_size or cfg.training.per_device_eval_batch_size
    collate = _collate(tokenizer.pad_token_id)
    measure = functools.partial(preference_eval.measure, tokenizer=tokenizer, rows=rows, collate=collate)
    results = {"examples": len(rows), "trained": measure(model, batch_size=size, max_length=cfg.training.max_length)}
    with untrained(model) as base_model:
        if base and base_model is not None:
            results["base"] = measure(base_model, batch_size=size, max_length=cfg.training.max_length)
            results["trained"]["reward_accuracy"] = preference_eval.reward_accuracy(results["trained"], results["base"])
    for measured in (results["trained"], results.get("base", {})):  # the per-pair log-probs were only a means
        measured.pop("chosen", None)
        measured.pop("rejected", None)
    preference_eval.print_report(results, cfg, run_dir)
    return results


def _prompts_as_conversations(eval_rows):
    if "answer" not in eval_rows.column_names or isinstance(eval_rows[0]["prompt"], str):
        raise FtError(
            "ft eval scores a run trained on prompts by their reference answers: conversational prompts with an "
            "'answer' column, which this run's eval data lacks"
        )
    return eval_rows.map(
        lambda row: {"messages": [*row["prompt"], {"role": "assistant", "content": str(row["answer"])}]},
        remove_columns=eval_rows.column_names,
    )


def print_report(results: dict, cfg, run_dir) -> None:
    rows = [("base model (untrained)", results.get("base")), ("trained", results["trained"])]
    print(f"ft: eval of {run_dir} on {results['examples']} eval examples of {cfg.data.source}")
    print(f"{'':<24}{'loss':>10}{'perplexity':>13}{'exact match':>20}")
    for name, r in rows:
        if r is None:
            continue
        match = (
            f"{100 * r['exact_match']:.1f}% ({r['exact_match_correct']}/{r['exact_match_total']})"
            if "exact_match" in r
            else "—"
        )
        print(f"{name:<24}{r['loss']:>10.4f}{r['perplexity']:>13.2f}{match:>20}")
    sys.stdout.flush()
