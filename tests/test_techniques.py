"""Optimizers and training techniques: each switch is shown to take effect, with numbers.

Trainers are built by ft's own path (config.compose -> train.build_trainer) on the tiny model;
the runs are a few steps long.
"""

import math
import random

import pytest
import torch

from conftest import NO_EVAL, QUICK, assert_refused, run_ft, write_jsonl
from ft import config
from ft.data import synthetic
from ft.errors import FtError
from ft.rules import machine
from ft.run import hardware
from ft.tasks.sft import build_trainer, sft_config


def make_trainer(tmp_path, *overrides):
    cfg = config.compose([*QUICK, f"training.output_dir={tmp_path}", "training.run_name=run", *overrides])
    return build_trainer(cfg, tmp_path / "run")


def inner_optimizer(trainer):
    return getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it


# --- config mapping and validation (nothing trained) ---------------------------------------------


def test_switches_map_onto_sft_config(tmp_path):
    cfg = config.compose(
        [
            "optim=galore",
            "peft=none",
            "optim.galore.rank=8",
            "training.neftune_noise_alpha=5",
            "training.packing=true",
            "training.activation_checkpointing=true",
            "training.activation_checkpointing_use_reentrant=true",
            "callbacks.early_stopping_patience=3",
        ]
    )
    args = sft_config(cfg, hardware.Hardware("cpu", False, 0), tmp_path, has_eval=True)
    assert args.optim == "galore_adamw" and "rank=8" in args.optim_args and "update_proj_gap=200" in args.optim_args
    assert args.optim_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert args.neftune_noise_alpha == 5 and args.packing and args.packing_strategy == "bfd"
    assert args.activation_checkpointing and args.activation_checkpointing_kwargs == {"use_reentrant": True}
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and args.save_strategy == "steps"
    default = sft_config(config.compose([]), hardware.Hardware("cpu", False, 0), tmp_path, has_eval=True)
    assert default.neftune_noise_alpha is None and not default.packing and not default.load_best_model_at_end
    assert default.optim == "adamw_torch" and not default.use_liger_kernel and not default.torch_compile


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim=galore"], "GaLore is a full-parameter optimizer"),
        (["optim=galore_layerwise", "peft=none", "training.gradient_accumulation_steps=2"], "cannot accumulate"),
        (["optim.target_modules=[q_proj]"], "for GaLore optimizers only"),
        (["training.padding_free=true"], "set training.packing=true"),
        (["training.packing_strategy=wrapped"], "choose one of bfd, bfd_split"),
        (["training.neftune_noise_alpha=0"], "neftune_noise_alpha must be > 0"),
        (["callbacks.sample_prompts=[hi]", "training.eval_strategy=no"], "never evaluates"),
        (["callbacks.early_stopping_patience=2", "data.eval_size=0"], "never evaluates"),
    ],
)
def test_bad_combinations_are_rejected(overrides, message):
    with pytest.raises(FtError, match=message):
        config.compose(overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.use_liger_kernel=true"], "use_liger_kernel=true needs a CUDA GPU"),
        (["optim=galore_8bit", "peft=none"], "needs a CUDA GPU"),
    ],
)
def test_cli_rejects_with_one_line_and_exit_2(tmp_path, overrides, message):
    if torch.cuda.is_available() and "GPU" in message:
        pytest.skip("this machine has a GPU")
    result = run_ft("train", *overrides, f"training.output_dir={tmp_path}", "training.run_name=r")
    assert_refused(result.returncode, result.stderr, message)
    assert not (tmp_path / "r").exists(), "nothing is written for a rejected config"


def test_wandb_online_without_credentials_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = config.compose(["logging=wandb"])
    with pytest.raises(FtError, match="no W&B credentials"):
        machine.check_requirements(cfg, hardware.Hardware("cpu", False, 0))
    monkeypatch.setenv("WANDB_MODE", "offline")
    machine.check_requirements(cfg, hardware.Hardware("cpu", False, 0))


# --- optimizers ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("optim", ["adamw_8bit", "paged_adamw_8bit", "lion_8bit"])
def test_8bit_optimizer_state_is_uint8(tmp_path, optim):
    trainer = make_trainer(tmp_path, f"optim={optim}", "training.max_steps=2", *NO_EVAL)
    trainer.train()
    opt = inner_optimizer(trainer)
    assert type(opt).__module__.startswith("bitsandbytes")
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    large = [p for p in params if p.numel() >= 4096]
    small = [p for p in params if p.numel() < 4096]
    assert large and small
    for p in large:
        assert opt.state[p]["state1"].dtype == torch.uint8, (p.shape, opt.state[p]["state1"].dtype)
    for p in small:  # bitsandbytes keeps small tensors in fp32: the threshold is what the README says
        assert opt.state[p]["state1"].dtype == torch.float32


@pytest.mark.slow
@pytest.mark.parametrize("optim", ["galore", "galore_layerwise"])
def test_galore_full_parameter_run_learns(tmp_path, optim):
    from galore_torch import GaLoreAdamW

    trainer = make_trainer(
        tmp_path,
        f"optim={optim}",
        "peft=none",
        "optim.galore.rank=16",
        "optim.galore.update_proj_gap=5",
        "training.max_steps=10",
        "training.learning_rate=1e-3",
        "training.eval_strategy=no",
    )
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    opt = inner_optimizer(trainer)
    # the layer-wise variant steps one GaLoreAdamW per parameter from backward hooks
    optimizers = list(opt.optimizer_dict.values()) if optim == "galore_layerwise" else [opt]
    assert optimizers and all(isinstance(o, GaLoreAdamW) for o in optimizers), type(opt)
    projected = [g for o in optimizers for g in o.param_groups if "rank" in g]
    assert projected and all(g["rank"] == 16 for g in projected)
    assert all(p.requires_grad for p in trainer.model.parameters()), "GaLore trains every parameter"
    assert after < 0.8 * before, (before, after)


# --- NEFTune ---------------------------------------------------------------------------------------


class EmbeddingNoiseProbe:
    """During training (NEFTune's hook is attached only then), compare the input embeddings'
    output in train mode with eval mode on the same tokens."""

    def __init__(self, shape=(2, 32)):
        from transformers import TrainerCallback

        probe = self
        self.diff, self.shape = None, shape

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, model=None, **kwargs):
                emb = model.get_input_embeddings()
                ids = torch.randint(0, emb.num_embeddings, probe.shape, generator=torch.Generator().manual_seed(0))
                with torch.no_grad():
                    emb.train()
                    noisy = emb(ids)
                    emb.eval()
                    clean = emb(ids)
                    emb.train()
                probe.diff = noisy - clean

        self.callback = Callback()


@pytest.mark.slow
@pytest.mark.parametrize("recipe, alpha", [("tiny_neftune", 5.0), ("default", None)])
def test_neftune_noise_has_the_expected_scale(tmp_path, recipe, alpha):
    trainer = make_trainer(tmp_path, f"recipe={recipe}", "training.max_steps=1", *NO_EVAL)
    probe = EmbeddingNoiseProbe()
    trainer.add_callback(probe.callback)
    trainer.train()
    if alpha is None:
        assert probe.diff.abs().max().item() == 0.0, "NEFTune is off by default"
        return
    length, dim = probe.shape[1], probe.diff.shape[-1]
    scale = alpha / math.sqrt(length * dim)  # noise ~ U(-scale, scale)
    assert probe.diff.abs().max().item() <= scale * (1 + 1e-4)
    assert probe.diff.abs().max().item() >= 0.95 * scale
    assert probe.diff.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.05)


# --- packing ---------------------------------------------------------------------------------------


def synthetic_rows(fmt: str, n: int = 64):
    rows = synthetic.generate(["add", "reverse", "upper", "sort"], n, 0)
    if fmt == "messages":
        return rows
    return [{"prompt": r["messages"][0]["content"], "completion": r["messages"][1]["content"]} for r in rows]


def token_losses(model, input_ids, labels, **kwargs):
    logits = model(input_ids=input_ids, **kwargs).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="none"), labels[
        0, 1:
    ] != -100


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["messages", "prompt_completion"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_per_sequence(tmp_path, fmt, attn):
    """Packing isolates sequences (position_ids), and the assistant-only / completion-only masks
    survive packing: each packed sequence's loss equals its loss computed alone."""
    source = write_jsonl(tmp_path / "data.jsonl", synthetic_rows(fmt))
    trainer = make_trainer(
        tmp_path,
        "training.packing=true",
        "training.max_length=256",
        f"data.source={source}",
        f"data.format={fmt}",
        f"model.attn_implementation={attn}",
        *NO_EVAL,
    )
    model = trainer.model.eval()
    row = trainer.train_dataset[0]
    assert len(row["seq_lengths"]) >= 4, "several sequences share the packed row"
    batch = trainer.data_collator([row])
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    with torch.no_grad():
        packed, valid = token_losses(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        start = 0
        for length in row["seq_lengths"]:
            ids = batch["input_ids"][:, start : start + length]
            labels = batch["labels"][:, start : start + length]
            alone, alone_valid = token_losses(model, ids, labels)
            assert alone_valid.sum() > 0, "every sequence keeps its assistant / completion tokens in the loss"
            assert alone_valid.sum() < length - 1, "and the prompt tokens are masked out"
            packed_seq = packed[start : start + length - 1][valid[start : start + length - 1]]
            assert (packed_seq.mean() - alone[alone_valid].mean()).abs().item() <= 1e-5
            start += length


@pytest.mark.slow
def test_packing_fills_token_slots_on_length_skewed_data(tmp_path):
    rng = random.Random(0)
    rows = []
    for i in range(400):  # 90% short exchanges, 10% long ones
        words = rng.randint(200, 300) if i % 10 == 0 else rng.randint(1, 6)
        answer = " ".join(rng.choice(synthetic.WORDS) for _ in range(words))
        rows.append(
            {"messages": [{"role": "user", "content": f"Repeat {i}"}, {"role": "assistant", "content": answer}]}
        )
    source = write_jsonl(tmp_path / "skewed.jsonl", rows)
    max_length, batch_size = 1024, 8
    trainer = make_trainer(
        tmp_path, "training.packing=true", f"training.max_length={max_length}", f"data.source={source}", *NO_EVAL
    )
    lengths = [n for row in trainer.train_dataset["seq_lengths"] for n in row]
    packed_rows = len(trainer.train_dataset)
    filled = sum(lengths) / (packed_rows * max_length)
    rng.shuffle(lengths)  # unpacked batches come in random order (the packed rows are sorted by length)
    padded = sum(lengths) / sum(
        batch_size * max(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)
    )
    print(f"real token slots: packed {filled:.1%}, padded batches of {batch_size} {padded:.1%}")
    assert len(lengths) == 400 and max(lengths) > 8 * min(lengths)
    assert filled >= 0.95
    assert padded < 0.6  # what packing saves on this data


# --- gradient accumulation -------------------------------------------------------------------------


@pytest.mark.slow
def test_grad_accumulation_matches_a_large_batch(tmp_path):
    """bs1 x GA8 and bs8 x GA1 see the same 8 examples per step; with token-normalised loss across
    the accumulated micro-batches (num_items_in_batch) both give the same losses and weights."""
    common = ["training.max_steps=2", "training.logging_steps=1", "peft.lora_dropout=0", *NO_EVAL]
    runs = {}
    for name, bs, ga in (("ga8", 1, 8), ("bs8", 8, 1)):
        trainer = make_trainer(
            tmp_path / name,
            *common,
            f"training.per_device_train_batch_size={bs}",
            f"training.gradient_accumulation_steps={ga}",
        )
        trainer.train()
        losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
        weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        runs[name] = losses, weights
    (loss_ga, w_ga), (loss_bs, w_bs) = runs["ga8"], runs["bs8"]
    assert len(loss_ga) == len(loss_bs) == 2
    print("per-step losses", loss_ga, loss_bs)
    assert max(abs(a - b) for a, b in zip(loss_ga, loss_bs)) <= 1e-5
    assert max((w_ga[n] - w_bs[n]).abs().max().item() for n in w_ga) <= 1e-5


# --- activation checkpointing with a k-bit model ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_trains_a_4bit_model(tmp_path, tiny_model_path, reentrant):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl import SFTTrainer

    from ft import data, models
    from ft.models import adapters

    cfg = config.compose(
        [
            *QUICK,
            "training.max_steps=2",
            "training.activation_checkpointing=true",
            f"training.activation_checkpointing_use_reentrant={str(reentrant).lower()}",
            *NO_EVAL,
        ]
    )
    args = sft_config(cfg, hardware.detect(), tmp_path, has_eval=False)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_path,
        dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
    )
    train_dataset, _ = data.load(cfg.data)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=models.load_tokenizer(cfg.model),
        peft_config=adapters.build_peft_config(cfg.peft),
    )
    trainer.train()
    layer = trainer.model.base_model.model.model.layers[0]
    assert trainer.model.base_model.model.is_gradient_checkpointing
    assert layer._gradient_checkpointing_func.keywords["use_reentrant"] is reentrant
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b), (
        "gradients reached every adapter through checkpointed layers"
    )
