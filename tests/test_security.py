"""Tokens stay out of everything a run writes or prints; remote code only when asked for; weights
only as safetensors."""

import re

import pytest

from conftest import PLANTED_SECRETS


@pytest.mark.slow
def test_tokens_never_reach_files_or_logs_and_weights_are_safetensors(cli_run):
    out, result = cli_run
    run_dir = out / "cli"

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 15 and list(run_dir.glob("tensorboard/events.*")) and (run_dir / "checkpoint-3").is_dir()
    for secret in set(PLANTED_SECRETS.values()):
        assert secret not in result.stdout + result.stderr
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, leaked

    weights = [p for p in run_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".safetensors")]
    assert {p.name for p in weights if p.suffix == ".safetensors"} == {"adapter_model.safetensors"}
    # torch pickles hold only the trainer's own state, never model weights
    assert {p.name for p in weights if p.suffix != ".safetensors"} <= {
        "training_args.bin",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
    }

    # the some-but-not-all truncation warning, with a count
    match = re.search(
        r"ft: warning: (\d+) of 190 training examples are longer than training.max_length=30", result.stdout
    )
    assert match and 0 < int(match.group(1)) < 190, result.stdout[-2000:]


def test_trust_remote_code_is_off_unless_set_and_warns_when_set(tiny_model_path, capsys):
    from ft import config, models

    assert config.compose([]).model.trust_remote_code is False
    cfg = config.compose(["model.trust_remote_code=true"]).model
    models.load_model(cfg, dtype=None)
    assert "ft: warning: model.trust_remote_code=true runs Python code shipped with tiny" in capsys.readouterr().out
    models.load_model(config.compose([]).model, dtype=None)
    assert "trust_remote_code" not in capsys.readouterr().out
