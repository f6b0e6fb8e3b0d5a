"""The preference methods beside DPO on the tiny model, with real TRL objects: a reward model
(task=reward), ORPO, SimPO and KTO (task=orpo / simpo / kto), and KTO's unpaired data format."""

import pytest
import torch

from conftest import write_jsonl
from ft import config, data, models
from ft.data import synthetic
from ft.errors import FtError
from ft.finish import evaluate, loading
from ft.tasks import kto, orpo, simpo
from ft.training import launch

TASKS = ["add", "reverse", "upper", "sort"]


def _compose(tmp_path, task, *extra):
    return config.compose([f"recipe=tiny_{task}", "logging=none", f"training.output_dir={tmp_path / 'runs'}", *extra])


def test_synthetic_unpaired_answers_alternate_right_and_wrong():
    rows = synthetic.generate_unpaired(TASKS, 40, seed=3)
    pairs = synthetic.generate_preferences(TASKS, 40, seed=3)
    assert rows == synthetic.generate_unpaired(TASKS, 40, seed=3)
    assert [r["label"] for r in rows] == [i % 2 == 0 for i in range(40)]
    for row, pair in zip(rows, pairs):
        assert row["prompt"] == pair["prompt"]
        assert row["completion"] == (pair["chosen"] if row["label"] else pair["rejected"])


def test_unpaired_plain_and_conversational_rows(tmp_path):
    rows = [{"prompt": "2+2?", "completion": "4", "label": True}, {"prompt": "3+3?", "completion": "7", "label": False}]
    cfg = _compose(tmp_path, "kto", f"data.source={write_jsonl(tmp_path / 'a.jsonl', rows * 2)}", "data.eval_size=0")
    train, _ = data.load(cfg.data)
    assert train[1] == rows[1]
    chat = [{"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4", "label": True}]
    cfg = _compose(tmp_path, "kto", f"data.source={write_jsonl(tmp_path / 'b.jsonl', chat * 2)}", "data.eval_size=0")
    assert data.load(cfg.data)[0][0]["completion"] == [{"role": "assistant", "content": "4"}]


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": "p", "completion": "", "label": True}, "'completion' is empty"),
        ({"prompt": None, "completion": "c", "label": True}, "'prompt' is missing"),
        ({"prompt": "p", "completion": "c", "label": "yes"}, "'label' is 'yes', not true or false"),
        ({"prompt": "p", "completion": "c", "label": None}, "'label' is None"),
    ],
)
def test_bad_unpaired_row_names_the_row(row, expected, tmp_path):
    good = {"prompt": "p", "completion": "c", "label": True}
    path = write_jsonl(tmp_path / "rows.jsonl", [good] * 3 + [row])
    with pytest.raises(FtError, match="data row 3: ") as raised:
        data.load(_compose(tmp_path, "kto", f"data.source={path}", "data.eval_size=0").data)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def _pairwise_accuracy(model, trainer) -> float:
    """By hand: the share of held-out pairs whose chosen answer gets the higher reward. TRL's collator
    puts every chosen sequence of a batch first, then the rejected ones."""
    wins = []
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
            chosen, rejected = rewards.chunk(2)
            wins.append(chosen > rejected)
    return torch.cat(wins).float().mean().item()


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(tmp_path):
    """A one-output classification head on the tiny Llama, trained with a LoRA adapter (PEFT SEQ_CLS:
    the new head trained in full); the saved run reloads as the same reward model."""
    from peft import PeftModel

    cfg = _compose(tmp_path, "reward", "training.run_name=reward", "data.eval_size=64", "training.eval_steps=1000")
    result = launch.train(cfg)
    trainer = result.trainer
    assert type(trainer.model).__name__ == "PeftModelForSequenceClassification"
    assert trainer.model.config.num_labels == 1
    start = next(row for row in trainer.state.log_history if row.get("step") == 0 and "eval_accuracy" in row)
    end = result.metrics
    base = models.load_model(cfg.model, torch.float32, num_labels=1)
    reloaded = PeftModel.from_pretrained(base, str(result.run_dir)).eval()
    trainer.model.eval()
    by_hand = _pairwise_accuracy(reloaded, trainer)
    print(
        f"held-out pairwise accuracy {start['eval_accuracy']:.3f} -> {end['eval_accuracy']:.3f} "
        f"(reloaded, by hand: {by_hand:.3f}), eval loss {start['eval_loss']:.4f} -> {end['eval_loss']:.4f}, "
        f"train time {end['train_runtime']:.1f}s"
    )
    assert by_hand == pytest.approx(end["eval_accuracy"])
    assert end["eval_loss"] < start["eval_loss"]
    # measured 0.547 -> 0.984 on these 64 pairs (63 ranked right; 0.953 and 0.922 with training seeds 1 and 2):
    # the synthetic pairs' rejected answers are each task's typical mistake. 0.9 leaves 5 pairs for the near-ties
    # another CPU's float rounding could flip.
    assert end["eval_accuracy"] >= 0.9 and end["eval_accuracy"] - start["eval_accuracy"] >= 0.2
    with pytest.raises(FtError, match="is a reward model"):  # generate / chat / eval / merge need an LM head
        loading.load_model(result.run_dir, loading.load_config(result.run_dir))


def _logits(model, tokenizer):
    batch = tokenizer(["What is 12 + 30?", "Sort these digits: 3 1 2"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.slow
@pytest.mark.parametrize("task, module", [("orpo", orpo), ("simpo", simpo), ("kto", kto)])
def test_trains_saves_and_reloads(task, module, tmp_path):
    from peft import PeftModel

    cfg = _compose(
        tmp_path,
        task,
        f"training.run_name={task}",
        "training.max_steps=20",
        "training.save_strategy=no",
        "data.eval_size=32",
        "training.eval_steps=1000",
    )
    result = launch.train(cfg)
    history = result.trainer.state.log_history
    start = next(row for row in history if row.get("step") == 0 and "eval_loss" in row)
    print(f"{task}: eval loss {start['eval_loss']:.4f} -> {result.metrics['eval_loss']:.4f}")
    assert result.metrics["eval_loss"] < start["eval_loss"]
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    tokenizer = models.load_tokenizer(cfg.model)
    trained = result.trainer.model.eval()
    reloaded = PeftModel.from_pretrained(models.load_model(cfg.model, torch.float32), str(result.run_dir)).eval()
    assert (_logits(trained, tokenizer) - _logits(reloaded, tokenizer)).abs().max() <= 1e-5
    card = (result.run_dir / "README.md").read_text()
    trainer_class = {"orpo": "ORPOTrainer", "simpo": "CPOTrainer", "kto": "KTOTrainer"}[task]  # SimPO is CPO's loss
    assert f"TRL's {trainer_class} + PEFT" in card
    if task == "kto":  # unpaired data: no pairs for ft eval to score
        with pytest.raises(FtError, match="ft eval does not score task=kto runs"):
            evaluate.evaluate(evaluate.EvalOptions(run_dir=str(result.run_dir)))
        return
    accuracy = result.metrics["eval_rewards/accuracies"]
    assert f"held-out preference accuracy (implicit reward of chosen > rejected), trained | {accuracy:.4f}" in card
    scored = evaluate.evaluate(evaluate.EvalOptions(run_dir=str(result.run_dir)))
    print(
        f"{task}: ft eval preference accuracy {scored['base']['preference_accuracy']:.3f} (base) -> "
        f"{scored['trained']['preference_accuracy']:.3f}; TRL's eval_rewards/accuracies {accuracy:.3f}"
    )
    assert scored["examples"] == 32
    assert scored["trained"]["preference_accuracy"] > scored["base"]["preference_accuracy"]
    # ORPO's and SimPO's implicit reward is beta x the mean per-token log-probability: the same ordering, up to
    # near-ties that padding in another batch shape can flip (measured: ORPO equal, SimPO one pair of 32 apart)
    assert scored["trained"]["preference_accuracy"] == pytest.approx(accuracy, abs=2 / 32 + 1e-9)
