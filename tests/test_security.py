"""Tokens stay out of everything a run writes or prints; remote code only when asked for; weights
only as safetensors."""

import re

import pytest

from conftest import QUICK, run_ft

HF_SECRET = "hf_PLANTEDsecretTOKEN0123456789"
WANDB_SECRET = "PLANTEDwandbKEY0123456789abcdef0123456789"


@pytest.mark.slow
def test_tokens_never_reach_files_or_logs_and_weights_are_safetensors(tmp_path):
    secrets = {"HF_TOKEN": HF_SECRET, "HUGGING_FACE_HUB_TOKEN": HF_SECRET, "WANDB_API_KEY": WANDB_SECRET}
    overrides = [o for o in QUICK if o not in ("logging=none", "training.save_strategy=no")]
    result = run_ft(
        "train",
        *overrides,
        "logging=tensorboard",
        "training.save_steps=3",
        "training.max_length=30",
        f"training.output_dir={tmp_path}",
        "training.run_name=secret",
        env_extra=secrets,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "secret"

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 15 and list(run_dir.glob("tensorboard/events.*")) and (run_dir / "checkpoint-3").is_dir()
    for secret in (HF_SECRET, WANDB_SECRET):
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
