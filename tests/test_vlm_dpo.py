"""task=vlm_dpo: image preference pairs in both shapes (prompt turns with image parts, or a prompt string with
<image>) become the same rows, a pair whose placeholders and images differ is refused naming its row, and the
tiny recipe raises the held-out preference accuracy (chosen answer likelier than the rejected one)."""

import random

import pytest

from conftest import write_jsonl
from ft import config
from ft.errors import FtError
from ft.tasks.vision_language import data

QUESTION = "What colour is the shape?"


def _pairs(tmp_path):
    """The same two pairs, as prompt turns and as prompt strings."""
    for colour in ("red", "blue"):
        data.draw(colour, "square", random.Random(0)).save(tmp_path / f"{colour}.png")
    turns = [
        {
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}],
            "chosen": [{"role": "assistant", "content": colour}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "green"}]}],
            "images": [f"{colour}.png"],
        }
        for colour in ("red", "blue")
    ]
    text = [
        {"prompt": f"<image>\n{QUESTION}", "chosen": colour, "rejected": "green", "image": f"{colour}.png"}
        for colour in ("red", "blue")
    ]
    return turns, text


def _load(source):
    cfg = config.compose(["task=vlm_dpo", "model.name_or_path=tiny-vlm-gemma3", f"data.source={source}"])
    cfg.data.eval_size = 0
    (train, _), shape = data.load(cfg.data, pairs=True)
    return train, shape


def test_both_pair_shapes_become_the_same_rows(tmp_path):
    turns, text = _pairs(tmp_path)
    from_turns, shape_t = _load(write_jsonl(tmp_path / "turns.jsonl", turns))
    from_text, shape_s = _load(write_jsonl(tmp_path / "text.jsonl", text))
    assert (shape_t, shape_s) == ("prompt turns", "prompt text")
    for key in ("prompt", "chosen", "rejected"):
        assert from_turns[key] == from_text[key]
    assert from_text["prompt"][0] == [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": QUESTION}]}
    ]
    assert from_text["chosen"][1] == [{"role": "assistant", "content": [{"type": "text", "text": "blue"}]}]
    colours = [{colour for _, colour in image.getcolors()} for [image] in from_text["images"]]
    assert colours == [{(255, 255, 255), data.COLOURS["red"]}, {(255, 255, 255), data.COLOURS["blue"]}]


def test_a_pair_whose_placeholders_and_images_differ_is_refused(tmp_path):
    turns, text = _pairs(tmp_path)
    text[1]["prompt"] = f"<image>\n{QUESTION} <image>"
    with pytest.raises(FtError, match=r"train row 1 has 2 image placeholder\(s\) and 1 image\(s\)"):
        _load(write_jsonl(tmp_path / "text.jsonl", text))
    turns[0]["images"] = []
    with pytest.raises(FtError, match=r"train row 0 has 1 image placeholder\(s\) and 0 image\(s\)"):
        _load(write_jsonl(tmp_path / "turns.jsonl", turns))


def test_synthetic_pairs_reject_a_wrong_word_of_the_same_kind():
    cfg = config.compose(["recipe=tiny_vlm_dpo"])
    cfg.data.synthetic.num_examples, cfg.data.eval_size = 40, 0
    (train, _), _ = data.load(cfg.data, pairs=True)
    for row in train:
        chosen, rejected = row["chosen"][0]["content"][0]["text"], row["rejected"][0]["content"][0]["text"]
        kind = data.COLOURS if "colour" in row["prompt"][0]["content"][1]["text"] else data.FIGURES
        assert chosen in kind and rejected in kind and chosen != rejected


def test_precomputed_reference_log_probs_are_refused():
    with pytest.raises(FtError, match="vlm_dpo.precompute_ref_log_probs"):
        config.compose(["recipe=tiny_vlm_dpo", "vlm_dpo.precompute_ref_log_probs=true"])


@pytest.mark.slow
def test_image_dpo_after_image_sft_raises_held_out_preference_accuracy(tmp_path, capsys):
    """The recipe as meant: after a tiny_vlm_gemma3 SFT run, DPO continues its adapter (the reference is TRL's
    frozen copy of it) on image pairs whose rejected answer is a wrong word of the same kind, so only the image
    tells them apart. Measured: 70% -> 86% of 100 held-out pairs, mean margin 2.4 -> 12.6 nats."""
    import json

    from ft.training import launch

    out = f"training.output_dir={tmp_path}"
    launch.train(config.compose(["recipe=tiny_vlm_gemma3", "logging=none", out, "training.run_name=sft"]))
    dpo = ["recipe=tiny_vlm_dpo", "logging=none", out, "training.run_name=dpo", f"model.adapter={tmp_path / 'sft'}"]
    result = launch.train(config.compose(dpo))
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    saved = json.loads((result.run_dir / "preference_results.json").read_text())
    assert saved["base_preference_accuracy"] >= 0.55  # the SFT run reads the images already
    assert saved["preference_accuracy"] >= saved["base_preference_accuracy"] + 0.08, saved
    assert saved["margin"] > saved["base_margin"] + 3, saved
    assert "preference accuracy on 100 held-out image pairs" in capsys.readouterr().out
    assert "eval_rewards/accuracies" in result.metrics  # TRL's own eval ran on the image pairs
    card = (result.run_dir / "README.md").read_text()  # the vision-language card, with the preference results
    assert "task=vlm_dpo: TRL's DPOTrainer" in card and "AutoModelForImageTextToText.from_pretrained" in card
    assert f"trained | {100 * saved['preference_accuracy']:.1f}% |" in card
    assert (result.run_dir / "example.png").is_file()

    from ft import cli  # the finished run answers about an image like a task=vlm run

    data.draw("red", "circle", random.Random(0)).save(tmp_path / "red.png")
    asked = ["generate", f"run_dir={result.run_dir}", f"image={tmp_path / 'red.png'}", f"prompt={QUESTION}"]
    assert cli.main(asked) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] in data.COLOURS
