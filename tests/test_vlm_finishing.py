"""Finishing a vision-language run: its adapter reloads to the trained model's logits and merges into one
AutoModelForImageTextToText; `ft chat` with `/image PATH`; `ft eval` scores its held-out image questions
trained vs untrained; the model card shows an example image and holds a snippet that runs; `ft push` takes
the processor and the example image; `ft data preview` shows image conversations as training collates them.
One short run (tiny Gemma 3, 16 steps), trained in this process, for the tests marked slow."""

import io
import json
import re
import subprocess
import sys

import pytest
import torch

from ft import cli, config
from ft.errors import FtError
from ft.finish import hub
from ft.run import rundir
from ft.tasks.vision_language import tiny
from ft.tasks.vision_language.schema import TINY_VLM_MODELS

STEPS, HELD_OUT = 16, 24


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from ft.training import launch

    out = tmp_path_factory.mktemp("vlm")
    cfg = config.compose(
        [
            "recipe=tiny_vlm_gemma3",
            f"training.max_steps={STEPS}",
            f"training.eval_steps={STEPS}",
            "data.synthetic.num_examples=160",
            "training.per_device_train_batch_size=4",
            "training.eval_before_training=false",
            f"data.eval_size={HELD_OUT}",
            "logging=none",
            f"training.output_dir={out}",
            "training.run_name=vlm",
        ]
    )
    return launch.train(cfg)


def _batch(run, processor=None):
    """Two held-out conversations with their images, collated as training collates them (with `processor`'s
    files when given: it must render the same tokens)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    rows = [dict(run.trainer.eval_dataset[i]) for i in range(2)]
    collator = run.trainer.data_collator
    if processor is not None:
        collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True, max_length=1024)
    batch = collator(rows)
    batch.pop("labels")
    return batch


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(**batch).logits.float()


def _assert_reloads_and_merges(run, out) -> tuple[float, float]:
    """The saved adapter reloads to the trained model's logits (<= 1e-5); `ft merge` into `out` gives one model
    with the training template and the same logits (<= 1e-4). Returns both max abs differences."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ft.tasks.vision_language.generate import Session

    batch = _batch(run)
    assert batch["pixel_values"].shape[0] >= 2  # the batch has its images
    trained = _logits(run.trainer.model, batch)
    reloaded = Session(run.run_dir).model
    reload_diff = (_logits(reloaded, batch) - trained).abs().max().item()
    assert reload_diff < 1e-5

    assert cli.main(["merge", f"run_dir={run.run_dir}", f"out={out}"]) == 0
    merged = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.chat_template == run.trainer.processing_class.chat_template  # the training template
    merged_batch = _batch(run, processor)
    assert torch.equal(merged_batch["input_ids"], batch["input_ids"])
    merged_diff = (_logits(merged, merged_batch) - _logits(reloaded, batch)).abs().max().item()
    assert merged_diff < 1e-4
    assert not any("lora" in name for name, _ in merged.named_parameters())
    return reload_diff, merged_diff


@pytest.mark.slow  # trains the module's run
def test_reloaded_adapter_and_merged_model_give_the_trained_logits(run, tmp_path, capsys):
    out = tmp_path / "merged"
    reload_diff, merged_diff = _assert_reloads_and_merges(run, out)
    assert f"merged model saved to {out}" in capsys.readouterr().out
    print(f"\nreload max abs diff {reload_diff:.2e}, merged {merged_diff:.2e}")
    with pytest.raises(FtError, match="already exists"):
        from ft.finish.merge import MergeOptions
        from ft.tasks.vision_language import finishing

        finishing.merge(MergeOptions(run_dir=str(run.run_dir), out=str(out)))


def _other_families() -> list:
    """The tiny families besides Gemma 3 (the module's run); Qwen2.5-VL's only with torchvision (its processor)."""
    return [
        pytest.param(name.removeprefix("tiny-vlm-"), marks=pytest.mark.skipif(bool(why), reason=why or ""))
        for name in TINY_VLM_MODELS
        if name != "tiny-vlm-gemma3"
        for why in [tiny.processor_missing(name)]
    ]


@pytest.mark.slow
@pytest.mark.parametrize("family", _other_families())
def test_every_family_reloads_and_merges(family, tmp_path):
    """The other tiny families (Gemma 3 is the module's run): a few steps, then the same two checks."""
    from ft.training import launch

    overrides = [f"recipe=tiny_vlm_{family}", "training.max_steps=3", "data.synthetic.num_examples=24"]
    overrides += ["data.eval_size=4", "training.eval_before_training=false", "training.report_exact_match=false"]
    run = launch.train(config.compose([*overrides, "logging=none", f"training.output_dir={tmp_path}"]))
    _assert_reloads_and_merges(run, tmp_path / "merged")


def _shown_prompts(stderr: str) -> list[str]:
    return [json.loads(line[len("ft: prompt ") :]) for line in stderr.splitlines() if line.startswith("ft: prompt ")]


@pytest.mark.slow  # trains the module's run
def test_chat_attaches_an_image_to_the_next_turn(run, tmp_path, monkeypatch, capsys):
    from ft.tasks.vision_language import data

    for colour in ("red", "blue"):
        data.draw(colour, "square", __import__("random").Random(0)).save(tmp_path / f"{colour}.png")
    (tmp_path / "notes.png").write_text("not an image")
    lines = [
        f"/image {tmp_path / 'red.png'}",
        "What colour is the shape?",
        f"/image {tmp_path / 'nowhere.png'}",  # no such file: a line on stderr, the chat goes on
        "What shape is this?",
        "/reset",
        f"/image {tmp_path / 'notes.png'}",  # not an image
        f"/image {tmp_path / 'blue.png'}",
        "And this one?",
        "exit",
        "never read",
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert cli.main(["chat", f"run_dir={run.run_dir}", "max_new_tokens=4", "show_prompt=true"]) == 0
    captured = capsys.readouterr()
    refusals = [line for line in captured.err.splitlines() if line.startswith("ft: /image")]
    assert refusals == [
        f"ft: /image {tmp_path / 'nowhere.png'}: no such file; the chat goes on",
        f"ft: /image {tmp_path / 'notes.png'} cannot be read as an image (UnidentifiedImageError); the chat goes on",
    ]
    first, second, third = _shown_prompts(captured.err)
    start_of_image = "<start_of_image>"
    assert first.count(start_of_image) == 1 and first.index(start_of_image) < first.index("What colour")
    assert second.startswith(first) and second.count(start_of_image) == 1  # the 2nd turn: no image of its own
    assert "What colour" not in third and third.count(start_of_image) == 1  # after /reset: a new conversation
    assert len(captured.out.strip().splitlines()) <= 3  # one reply per turn (a reply may be empty)


def test_text_chat_refuses_an_image_in_one_line_and_goes_on(monkeypatch, capsys):
    from ft.finish import generate

    class Text:  # a text-only run, as generate.chat sees one
        chat = True

        def __init__(self, run_dir):
            pass

        def conversation(self, history, text):
            return history + [{"role": "user", "content": text}]

        def generate(self, messages, options):
            return "ok"

    monkeypatch.setattr(generate, "Session", Text)
    history = generate.chat(generate.ChatOptions(run_dir="text-run"), io.StringIO("/image cat.png\nhello\n"))
    assert [m["content"] for m in history] == ["hello", "ok"]
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ft: text-run is a text-only language model, which cannot see images")
    assert cli.main(["chat", "run_dir=text-run", "image=cat.png"]) == 2  # chat takes no image=
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow  # trains the module's run
def test_eval_scores_held_out_image_questions_trained_vs_base(run, capsys):
    from ft.finish.evaluate import EvalOptions, evaluate

    results = evaluate(EvalOptions(run_dir=str(run.run_dir), exact_match_examples=HELD_OUT))
    trained, base = results["trained"], results["base"]
    assert trained["exact_match_total"] == base["exact_match_total"] == HELD_OUT == results["examples"]
    # the same questions the end of training scored, with the adapter reloaded from disk
    assert trained["exact_match"] == pytest.approx(run.metrics["exact_match"], abs=1 / HELD_OUT)
    assert base["exact_match"] == pytest.approx(run.metrics["base_exact_match"], abs=1 / HELD_OUT)
    assert trained["exact_match"] > base["exact_match"]
    report = capsys.readouterr().out
    assert f"on {HELD_OUT} held-out image questions" in report
    assert f"{100 * trained['exact_match']:.1f}% ({trained['exact_match_correct']}/{HELD_OUT})" in report


@pytest.mark.slow  # trains the module's run
def test_card_shows_an_example_image_and_its_snippet_runs(run, tmp_path):
    from PIL import Image

    card = (run.run_dir / rundir.CARD).read_text()
    assert re.search(r"^pipeline_tag: image-text-to-text$", card, re.MULTILINE)
    assert "A vision-language LoRA adapter for `" in card
    assert f"![a held-out image]({rundir.EXAMPLE_IMAGE})" in card
    shown = Image.open(run.run_dir / rundir.EXAMPLE_IMAGE)
    held_out = run.trainer.eval_dataset[0]["images"][0]
    assert shown.convert("RGB").tobytes() == held_out.convert("RGB").tobytes()
    for key, label in (("base_exact_match", "untrained base"), ("exact_match", "trained")):
        value = f"{100 * run.metrics[key]:.1f}%"
        assert f"{HELD_OUT} held-out image questions, {label} | {value} |" in card
    answer = re.search(r"The trained model answers `(.*?)`", card).group(1)
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", card, re.DOTALL).group(1)
    assert f'adapter = "{run.run_dir.resolve()}"' in snippet and "AutoModelForImageTextToText" in snippet
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == answer  # the card's answer, from the card's own code


@pytest.mark.slow  # trains the module's run
def test_push_takes_the_processor_and_the_example_image(run):
    files = hub.push(run.run_dir, "alice/tiny-vlm", dry_run=True)
    assert {"processor_config.json", rundir.EXAMPLE_IMAGE, "chat_template.jinja", "tokenizer.json"} <= set(files)
    assert {rundir.ADAPTER_WEIGHTS, rundir.CARD, rundir.LOSS_PLOT, rundir.CONFIG} <= set(files)
    assert "training_args.bin" not in files and "trainer_state.json" not in files


def test_data_preview_shows_the_image_tokens_and_marks_the_answers():
    from ft.commands import preview
    from ft.tasks.vision_language import data

    out = io.StringIO()
    shares = preview.preview(["recipe=tiny_vlm_gemma3", "n=2"], out=out)
    text = out.getvalue()
    assert len(shares) == 2 and all(0 < share < 0.5 for share in shares)
    examples = text.split("--- example ")[1:]
    assert len(examples) == 2
    for example in examples:
        assert "<start_of_image><image_soft_token>(x4)<end_of_image>" in example  # the image, in its tokens
        [trained] = re.findall(r"\[\[(.*?)\]\]", example, re.DOTALL)
        assert trained.strip().removesuffix("<end_of_turn>") in ("red", "green", "blue", "yellow", *data.FIGURES)
        assert "What" in example.split("[[")[0]  # the question: shown, not trained
    assert "ft: assistant masks: TRL's training variant" in text and "warning" not in text
