"""`ft eval` on a preference run (task=dpo, orpo, simpo): which answer of each held-out pair the model prefers.

- preference accuracy: the share of pairs whose chosen answer has the higher mean per-token log-probability
  (the length-normalized likelihood SimPO and ORPO train on), for the trained model and its untrained base;
- reward accuracy: the share of pairs whose implicit reward log p_trained(answer) - log p_base(answer) is
  higher for the chosen answer: TRL's eval_rewards/accuracies with the base as the reference (a run that
  started from model.adapter was trained against that adapter instead).
"""

import sys

from ft.errors import FtError


def shared_prefix(ids: list[int], prompt_ids: list[int]) -> int:
    """How many leading tokens of `ids` are the prompt's: the tokens before the answer."""
    prefix = 0
    while prefix < min(len(ids), len(prompt_ids)) and ids[prefix] == prompt_ids[prefix]:
        prefix += 1
    return prefix


def _features(row, tokenizer, answer: str, max_length: int) -> dict:
    """input_ids with labels on the answer's tokens only."""
    if isinstance(row["prompt"], str):
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = tokenizer(row["prompt"] + row[answer])["input_ids"]
    else:
        prompt_ids = list(
            tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
        )
        ids = list(tokenizer.apply_chat_template(row["prompt"] + row[answer], return_dict=True)["input_ids"])
    prefix = shared_prefix(ids, prompt_ids)
    labels = [-100] * prefix + ids[prefix:]
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def answer_log_probs(model, tokenizer, rows, answer: str, collate, batch_size: int, max_length: int):
    """(summed log-probability of each row's `answer` given its prompt, its token count): two tensors.
    `collate`: pads a list of features into a batch."""
    import torch
    import torch.nn.functional as F

    sums, counts = [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate([_features(row, tokenizer, answer, max_length) for row in rows[start : start + batch_size]])
            batch = {key: value.to(model.device) for key, value in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"][:, 1:]
            losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
            sums.append(-losses.sum(dim=1).double().cpu())
            counts.append((labels != -100).sum(dim=1).cpu())
    return torch.cat(sums), torch.cat(counts)


def measure(model, tokenizer, rows, collate, batch_size: int, max_length: int) -> dict:
    """Log-probabilities of both answers of every pair, and the model's preference accuracy."""
    chosen, chosen_tokens = answer_log_probs(model, tokenizer, rows, "chosen", collate, batch_size, max_length)
    rejected, rejected_tokens = answer_log_probs(model, tokenizer, rows, "rejected", collate, batch_size, max_length)
    if (chosen_tokens == 0).any() or (rejected_tokens == 0).any():
        raise FtError(f"an answer of the eval pairs lies beyond training.max_length={max_length}: raise it")
    accuracy = (chosen / chosen_tokens > rejected / rejected_tokens).double().mean().item()
    return {"chosen": chosen, "rejected": rejected, "preference_accuracy": accuracy}


def reward_accuracy(trained: dict, base: dict) -> float:
    margins = (trained["chosen"] - base["chosen"]) - (trained["rejected"] - base["rejected"])
    return (margins > 0).double().mean().item()


def print_report(results: dict, cfg, run_dir) -> None:
    print(f"ft: eval of {run_dir} on {results['examples']} held-out pairs of {cfg.data.source}")
    print(f"{'':<24}{'preference accuracy':>21}{'reward accuracy':>18}")
    for name, key in (("base model (untrained)", "base"), ("trained", "trained")):
        if key in results:
            r = results[key]
            reward = f"{100 * r['reward_accuracy']:.1f}%" if "reward_accuracy" in r else "—"
            print(f"{name:<24}{100 * r['preference_accuracy']:>20.1f}%{reward:>18}")
    sys.stdout.flush()
