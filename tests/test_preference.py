"""Preference training (task=dpo) on the tiny model with real TRL objects: the preference data
format, the reference model TRL uses beside an adapter, and SFT -> DPO raising held-out preference
accuracy."""

import json

import pytest
import torch

from conftest import write_jsonl
from ft import config, data, models
from ft.data import synthetic
from ft.errors import FtError
from ft.finish import evaluate
from ft.tasks import dpo
from ft.training import launch

TASKS = ["add", "reverse", "upper", "sort"]


def _compose(tmp_path, *extra):
    return config.compose(["recipe=tiny_dpo", "logging=none", f"training.output_dir={tmp_path / 'runs'}", *extra])


def test_plain_and_conversational_rows_with_renamed_columns(tmp_path):
    rows = [
        {"question": "2+2?", "good": "4", "bad": "5"},
        {"question": [{"role": "user", "content": "3+3?"}], "good": "6", "bad": "7"},
    ]
    for index, row in enumerate(rows):
        path = write_jsonl(tmp_path / f"pairs{index}.jsonl", [row] * 4)
        columns = ["+data.columns.prompt=question", "+data.columns.chosen=good", "+data.columns.rejected=bad"]
        cfg = _compose(tmp_path, f"data.source={path}", "data.eval_size=0", *columns)
        train, _ = data.load(cfg.data)
        assert train[0] == (
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
            if index == 0
            else {
                "prompt": [{"role": "user", "content": "3+3?"}],
                "chosen": [{"role": "assistant", "content": "6"}],
                "rejected": [{"role": "assistant", "content": "7"}],
            }
        )


def test_implicit_prompt_is_the_turns_both_conversations_begin_with(tmp_path):
    user = {"role": "user", "content": "What is 2 + 2?"}
    row = {
        "chosen": [user, {"role": "assistant", "content": "4"}],
        "rejected": [user, {"role": "assistant", "content": "22"}],
    }
    path = write_jsonl(tmp_path / "pairs.jsonl", [row] * 4)
    train, _ = data.load(_compose(tmp_path, f"data.source={path}", "data.eval_size=0").data)
    assert train[0] == {"prompt": [user], "chosen": row["chosen"][1:], "rejected": row["rejected"][1:]}
    assert set(train.column_names) == {"prompt", "chosen", "rejected"}


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"chosen": "c", "rejected": "r"}, "plain-text chosen/rejected without a prompt column"),
        (
            {"chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "b"}]},
            "share no prompt",
        ),
    ],
)
def test_bad_implicit_prompt_row_names_the_row(row, expected, tmp_path):
    good = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "c"}]}
    good["rejected"] = [good["chosen"][0], {"role": "assistant", "content": "r"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", [good] * 3 + [row])
    with pytest.raises(FtError, match="data row 3: ") as raised:
        data.load(_compose(tmp_path, f"data.source={path}", "data.eval_size=0").data)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": "p", "chosen": "", "rejected": "r"}, "'chosen' is empty"),
        ({"prompt": " ", "chosen": "c", "rejected": "r"}, "'prompt' is empty"),
        ({"prompt": "p", "chosen": "c", "rejected": None}, "'rejected' is missing"),
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen and rejected are the same"),
        ({"prompt": [{"role": "assistant", "content": "hi"}], "chosen": "c", "rejected": "r"}, "end with a user turn"),
    ],
)
def test_bad_preference_row_names_the_row(row, expected, tmp_path):
    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good] * 3 + [row])
    with pytest.raises(FtError, match="data row 3: ") as raised:
        data.load(_compose(tmp_path, f"data.source={path}", "data.eval_size=0").data)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_synthetic_pairs_are_deterministic_right_over_wrong_and_held_out(tmp_path):
    rows = synthetic.generate_preferences(TASKS, 200, seed=3)
    assert rows == synthetic.generate_preferences(TASKS, 200, seed=3)
    sft_rows = synthetic.generate(TASKS, 200, seed=3)
    assert [r["prompt"][0] for r in rows] == [r["messages"][0] for r in sft_rows]  # same prompts as SFT
    assert [r["chosen"][0]["content"] for r in rows] == [r["messages"][1]["content"] for r in sft_rows]
    assert all(r["chosen"] != r["rejected"] for r in rows)
    train, evaluation = data.load(_compose(tmp_path, "data.eval_size=40").data)
    assert len(evaluation) == 40
    assert not {json.dumps(r["prompt"]) for r in train} & {json.dumps(r["prompt"]) for r in evaluation}


def _sequence_logps(model, batch) -> torch.Tensor:
    """Sum of the log-probs of the answer tokens, computed by hand from the logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)


def test_reference_is_the_base_with_the_adapter_off(tmp_path):
    """No second copy of the model: TRL's reference log-probs (adapter switched off) equal those of an
    explicitly loaded, frozen copy of the base, even once the adapter has moved away from zero."""
    cfg = _compose(tmp_path, "data.synthetic.num_examples=64", "data.eval_size=8", "training.run_name=ref")
    trainer = dpo.build_trainer(cfg, tmp_path / "run")
    assert trainer.ref_model is None
    with torch.no_grad():  # move the adapter (and the fully trained lm_head copy) off the base
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    trainer.model.eval()
    batch = next(iter(trainer.get_eval_dataloader()))
    with torch.no_grad():
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
        frozen = models.load_model(cfg.model, torch.float32).eval()
        expected = _sequence_logps(frozen, batch)
        policy = _sequence_logps(trainer.model, batch)
    assert torch.allclose(torch.cat([ref_chosen, ref_rejected]), expected, atol=1e-5, rtol=0)
    assert (policy - expected).abs().max() > 1e-2  # the policy itself did move


@pytest.mark.slow
def test_dpo_after_sft_raises_held_out_preference_accuracy(default_run, tmp_path):
    """SFT -> DPO as two runs, the second continuing the first's adapter (model.adapter): the default recipe's
    run (conftest's `default_run`), then recipe=tiny_dpo on pairs of the tasks that run learned. The held-out
    accuracy is TRL's eval_rewards/accuracies: the share of pairs whose implicit reward
    beta * (log p_policy - log p_ref) is higher for chosen than rejected. At the start policy == reference,
    so every pair ties and it is 0."""
    sft_run_dir, _ = default_run
    dpo_cfg = _compose(
        tmp_path,
        f"model.adapter={sft_run_dir}",
        "data.synthetic.tasks=[add,upper,sort]",
        "training.run_name=dpo",
        "training.save_strategy=no",
        "data.eval_size=64",
        "training.eval_steps=1000",  # evaluated at the start and at the end only
    )
    result = launch.train(dpo_cfg)
    history = result.trainer.state.log_history
    start = next(row for row in history if row.get("step") == 0 and "eval_rewards/accuracies" in row)
    end = result.metrics
    print(
        f"held-out preference accuracy {start['eval_rewards/accuracies']:.3f} -> {end['eval_rewards/accuracies']:.3f}, "
        f"eval loss {start['eval_loss']:.4f} -> {end['eval_loss']:.4f}, margin {end['eval_rewards/margins']:.3f}, "
        f"DPO train time {end['train_runtime']:.1f}s"
    )
    assert start["eval_rewards/accuracies"] == 0.0
    # measured 0.969 (62 of these 64 pairs; 0.984 with training seed 1) after the default run + 40 DPO steps;
    # on pairs of all four tasks, `reverse` among them, which the default run did not learn: 0.891
    assert end["eval_rewards/accuracies"] >= 0.9
    assert end["eval_loss"] < start["eval_loss"]
    assert (result.run_dir / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_ft_eval_reward_accuracy_is_trls_and_the_card_shows_it(tmp_path):
    """A DPO run from the base (no model.adapter), so its reference is the base with the adapter off, which is
    also ft eval's: ft eval's reward accuracy, computed apart from TRL, must match TRL's final
    eval_rewards/accuracies."""
    cfg = _compose(tmp_path, "training.run_name=dpo", "training.max_steps=20", "data.eval_size=32")
    cfg.training.save_strategy, cfg.training.eval_steps = "no", 1000
    result = launch.train(cfg)
    accuracy = result.metrics["eval_rewards/accuracies"]
    card = (result.run_dir / "README.md").read_text()
    assert f"held-out preference accuracy (implicit reward of chosen > rejected), trained | {accuracy:.4f}" in card
    assert "held-out preference accuracy (implicit reward of chosen > rejected), at the start | 0.0000" in card
    scored = evaluate.evaluate(evaluate.EvalOptions(run_dir=str(result.run_dir)))
    print(
        f"ft eval: reward accuracy {scored['trained']['reward_accuracy']:.3f} (TRL: {accuracy:.3f}), preference "
        f"accuracy {scored['base']['preference_accuracy']:.3f} (base) -> {scored['trained']['preference_accuracy']:.3f}"
    )
    assert scored["trained"]["reward_accuracy"] == pytest.approx(accuracy, abs=1 / 32 + 1e-9)  # measured: equal


@pytest.mark.slow
def test_qlora_dpo_trains_a_4bit_base(tmp_path):
    """DPO on a 4-bit base (QLoRA): the base layers stay Linear4bit, the adapter learns, the eval loss falls."""
    import bitsandbytes as bnb

    cfg = _compose(
        tmp_path,
        "peft=qlora",
        "training.run_name=qdpo",
        "training.max_steps=10",
        "training.eval_steps=1000",
        "training.save_strategy=no",
        "data.synthetic.num_examples=200",
        "data.eval_size=32",
    )
    result = launch.train(cfg)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in result.trainer.model.modules())
    assert result.metrics["eval_loss"] < result.metrics["base_loss"]
    assert (result.run_dir / "adapter_model.safetensors").is_file()
