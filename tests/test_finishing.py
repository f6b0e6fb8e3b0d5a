"""What users do with a finished run: read its model card, push it, generate / chat, evaluate.

One short training run (conftest's session-scoped `finished`: 40 steps, checkpoints every 20) is what the
commands run against, for real (the CLI in subprocesses, the Hub replaced by a local HTTP server)."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import QUICK, assert_refused, free_port, run_ft
from ft import config
from ft.errors import FtError
from hub_server import HubServer

pytestmark = pytest.mark.slow

PLANTED_TOKEN = "hf_plantedTOKENdoNotLeak0123456789"
ALLOW_LISTED = {
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "chat_template.jinja",
    "config.yaml",
    "loss.png",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _hashes(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _hub_env(url: str, tmp_path: Path) -> dict:
    return {
        "HF_ENDPOINT": url,
        "HF_TOKEN": PLANTED_TOKEN,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
    }


# --- model card -------------------------------------------------------------------------------------


def _front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, "the card starts with YAML front-matter"
    return yaml.safe_load(match.group(1))


def test_model_card_has_hub_metadata_results_and_recipe(finished):
    card = (finished.run_dir / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "peft"
    assert {"lora", "peft", "trl", "sft"} <= set(meta["tags"])
    adapter_config = json.loads((finished.run_dir / "adapter_config.json").read_text())
    assert meta["base_model"] == adapter_config["base_model_name_or_path"]  # the tiny base, resolved
    assert "datasets" not in meta  # synthetic data has no hub id
    assert "![loss curve](loss.png)" in card and (finished.run_dir / "loss.png").stat().st_size > 1000
    metrics = finished.metrics
    assert f"{metrics['eval_loss']:.4f}" in card and f"{metrics['base_loss']:.4f}" in card
    # the exact match `ft train` prints at the end of a run on the synthetic tasks, untrained -> trained
    assert "exact_match" in metrics and "base_exact_match" in metrics
    assert f"held-out prompts, untrained base | {100 * metrics['base_exact_match']:.1f}% |" in card
    assert f"held-out prompts, trained | {100 * metrics['exact_match']:.1f}% |" in card
    assert (finished.run_dir / "config.yaml").read_text().strip() in card
    assert "190 training examples, 10 eval examples" in card and "40 steps" in card
    assert "peft.co" not in card.lower() and "[More Information Needed]" not in card  # PEFT's stub was replaced
    assert f"vllm serve {meta['base_model']} --enable-lora --lora-modules adapter=<this directory>" in card


def test_model_card_usage_snippet_runs_as_written(finished, tmp_path):
    card = (finished.run_dir / "README.md").read_text()
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", card, re.DOTALL).group(1)
    assert f'adapter = "{finished.run_dir.resolve()}"' in snippet and "apply_chat_template" in snippet
    # Run it verbatim from another directory, then check that it did generate new tokens.
    check = '\nassert output.shape[1] > inputs["input_ids"].shape[1]\nprint("SNIPPET-OK")\n'
    result = subprocess.run(
        [sys.executable, "-c", snippet + check], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("SNIPPET-OK")


def test_hub_push_needs_a_repo_id():
    with pytest.raises(FtError, match="hub.repo_id"):
        config.compose(["hub.push=true"])
    with pytest.raises(FtError, match="not a valid Hub repo id"):
        config.compose(["hub.repo_id=not//valid"])


# --- generate / chat ---------------------------------------------------------------------------------


def _shown_prompts(stderr: str) -> list[str]:
    return [json.loads(line[len("ft: prompt ") :]) for line in stderr.splitlines() if line.startswith("ft: prompt ")]


def test_generate_streams_text_through_the_training_chat_template(finished):
    from transformers import AutoTokenizer

    prompt = "What is 12 + 30?"
    result = run_ft(
        "generate",
        f"run_dir={finished.run_dir}",
        f"prompt={prompt}",
        "max_new_tokens=12",
        "show_prompt=true",
        warm=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "generated some text"
    [shown] = _shown_prompts(result.stderr)
    messages = [{"role": "user", "content": prompt}]
    saved = AutoTokenizer.from_pretrained(finished.run_dir)
    assert shown == saved.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    training_tokenizer = finished.trainer.processing_class
    assert saved.chat_template == training_tokenizer.chat_template
    assert shown == training_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert shown.endswith("<|im_start|>assistant\n")


def test_generate_with_an_image_on_a_text_run_is_one_line_and_loads_nothing(finished, tmp_path):
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"any bytes: the run is refused before the image is read")
    result = run_ft("generate", f"run_dir={finished.run_dir}", "prompt=What is this?", f"image={picture}", warm=True)
    assert_refused(result.returncode, result.stderr, "is a text-only language model", "task=vlm")
    assert "loaded" not in result.stderr


def test_chat_keeps_the_conversation(finished):
    from transformers import AutoTokenizer

    result = run_ft(
        "chat",
        f"run_dir={finished.run_dir}",
        "max_new_tokens=8",
        "show_prompt=true",
        stdin="What is 2 + 3?\nSort these digits: 3 1 2\nexit\nnever read\n",
        warm=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = _shown_prompts(result.stderr)  # two turns, then `exit`
    tokenizer = AutoTokenizer.from_pretrained(finished.run_dir)
    assert second.startswith(first)  # the second prompt carries the first exchange
    reply = second[len(first) :].split("<|im_end|>")[0]
    history = [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Sort these digits: 3 1 2"},
    ]
    assert second == tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False)


# --- eval --------------------------------------------------------------------------------------------


def test_eval_reports_loss_and_perplexity_and_beats_the_base(finished, capsys):
    from ft.finish.evaluate import EvalOptions, evaluate

    results = evaluate(EvalOptions(run_dir=finished.run_dir, exact_match_examples=8, max_new_tokens=8))
    trained, base = results["trained"], results["base"]
    print(json.dumps(results))
    assert trained["loss"] < 0.7 * base["loss"], results
    assert trained["perplexity"] == pytest.approx(2.718281828 ** trained["loss"], rel=1e-6)
    # Same split, tokens and masking as training's own evaluation (which ran on the same data):
    assert trained["loss"] == pytest.approx(finished.metrics["eval_loss"], rel=0.02)
    assert base["loss"] == pytest.approx(finished.metrics["base_loss"], rel=0.02)
    assert trained["exact_match_total"] == base["exact_match_total"] == 8
    report = capsys.readouterr().out
    assert "base model (untrained)" in report and "trained" in report and "perplexity" in report
    assert f"{trained['loss']:.4f}" in report and f"{base['loss']:.4f}" in report


# --- push --------------------------------------------------------------------------------------------


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the run for commands that may change it (push points the card at the repo)."""
    return Path(shutil.copytree(finished.run_dir, tmp_path / "run"))


def test_push_uploads_exactly_the_allow_list_and_never_the_token(run_copy, tmp_path):
    assert list(run_copy.glob("checkpoint-*/optimizer.pt")) and (run_copy / "training_args.bin").exists()
    with HubServer() as hub:
        result = run_ft(
            "push",
            f"run_dir={run_copy}",
            "repo_id=alice/tiny-adapter",
            "private=true",
            "revision=exp",
            env_extra=_hub_env(hub.url, tmp_path),
        )
    assert result.returncode == 0, result.stderr[-3000:]
    [commit] = hub.commits
    assert commit["repo"] == "alice/tiny-adapter" and commit["revision"] == "exp" and hub.branches == ["exp"]
    assert hub.created == [{"name": "tiny-adapter", "organization": "alice", "visibility": "private"}]
    assert set(commit["files"]) == ALLOW_LISTED
    for name, data in commit["files"].items():
        assert data == (run_copy / name).read_bytes(), name
    assert 'adapter = "alice/tiny-adapter"' in commit["files"]["README.md"].decode()  # the snippet loads from the repo
    # The token was used (from the environment) and went nowhere else.
    assert set(hub.auth_headers) == {f"Bearer {PLANTED_TOKEN}"}
    assert not [b for b in hub.bodies if PLANTED_TOKEN.encode() in b]
    assert not [p for p in run_copy.rglob("*") if p.is_file() and PLANTED_TOKEN.encode() in p.read_bytes()]
    assert PLANTED_TOKEN not in result.stdout + result.stderr
    # Only the upload protocol (and huggingface_hub's own user-agent registry lookup, a bodiless GET).
    expected = (
        r"/api/(repos/create|validate-yaml|models/alice/tiny-adapter/(branch|preupload|commit)/exp|agent-harnesses)"
    )
    assert [r for r in hub.requests if not re.fullmatch(expected, r[1].split("?")[0])] == []


def test_push_dry_run_lists_exactly_what_would_go_and_sends_nothing(run_copy, tmp_path):
    before = _hashes(run_copy)
    with HubServer() as hub:
        result = run_ft(
            "push",
            f"run_dir={run_copy}",
            "repo_id=alice/tiny-adapter",
            "--dry-run",
            env_extra=_hub_env(hub.url, tmp_path),
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert hub.requests == []
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert listed == ALLOW_LISTED
    left_out = result.stdout.split("left out:")[1]
    for name in ("checkpoint-20/", "checkpoint-40/", "training_args.bin", "trainer_state.json", ".env"):
        assert name in left_out
    assert _hashes(run_copy) == before


def test_push_to_an_unreachable_hub_fails_in_one_line_and_leaves_the_run(run_copy, tmp_path):
    before = _hashes(run_copy)
    result = run_ft(
        "push",
        f"run_dir={run_copy}",
        "repo_id=alice/tiny-adapter",
        env_extra=_hub_env(f"http://127.0.0.1:{free_port()}", tmp_path),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ft: error: cannot reach the Hub"), result.stderr
    assert PLANTED_TOKEN not in result.stderr + result.stdout
    assert _hashes(run_copy) == before


def test_push_without_a_token_or_permission_says_so(run_copy, tmp_path):
    env = _hub_env("http://127.0.0.1:9", tmp_path)
    del env["HF_TOKEN"]
    result = run_ft("push", f"run_dir={run_copy}", "repo_id=alice/tiny-adapter", env_extra=env, env_drop=("HF_TOKEN",))
    assert assert_refused(result.returncode, result.stderr) == (
        "ft: error: no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)"
    )
    before = _hashes(run_copy)
    with HubServer(forbidden=True) as hub:
        result = run_ft("push", f"run_dir={run_copy}", "repo_id=bob/not-mine", env_extra=_hub_env(hub.url, tmp_path))
    assert_refused(result.returncode, result.stderr, "no permission to write to bob/not-mine")
    assert hub.commits == [] and _hashes(run_copy) == before


def test_push_command_errors_are_one_line(run_copy):
    result = run_ft("push", f"run_dir={run_copy}", "repo_id=alice/x", "privat=true")
    assert_refused(result.returncode, result.stderr, "unknown key 'privat'", "private")
    result = run_ft("push", f"run_dir={run_copy}")
    assert_refused(result.returncode, result.stderr, "repo_id")


def test_train_with_hub_push_uploads_at_the_end(tmp_path):
    with HubServer() as hub:
        result = run_ft(
            "train",
            *QUICK,
            "training.max_steps=2",
            "data.synthetic.num_examples=100",
            f"training.output_dir={tmp_path}",
            "training.run_name=pushed",
            "hub.push=true",
            "hub.repo_id=alice/pushed",
            env_extra=_hub_env(hub.url, tmp_path),
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ft: pushed 8 files to alice/pushed" in result.stdout
    [commit] = hub.commits
    assert set(commit["files"]) == ALLOW_LISTED
    run_dir = tmp_path / "pushed"
    assert all(data == (run_dir / name).read_bytes() for name, data in commit["files"].items())
    assert 'adapter = "alice/pushed"' in (run_dir / "README.md").read_text()
