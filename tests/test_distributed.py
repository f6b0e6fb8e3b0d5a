"""Scaling out on CPU with real processes (gloo): DDP, DeepSpeed ZeRO-2/3, two "nodes" on
127.0.0.1, plus the generated accelerate configs and the SLURM script."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from conftest import assert_refused, free_port, run_ft
from ft import config
from ft.errors import FtError
from ft.rules import distributed as distributed_rules
from ft.run import distributed, resume

WORKER = Path(__file__).with_name("distributed_worker.py")
# Deterministic short runs: no dropout, a loss logged every step.
SMALL = [
    "training.max_steps=4",
    "training.logging_steps=1",
    "training.save_strategy=no",
    "logging=none",
    "data.synthetic.num_examples=200",
    "peft.lora_dropout=0",
    "training.eval_before_training=false",
    "training.eval_strategy=no",
]


def step_losses(run_dir: Path) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [row["loss"] for row in history if "loss" in row]


# --- generated configs and validation (fast) -----------------------------------------------


@pytest.mark.parametrize("strategy", distributed.STRATEGIES[1:])
def test_accelerate_config_for_every_option(strategy):
    cfg = config.compose(
        [
            f"distributed={strategy}",
            "distributed.num_processes=4",
            "distributed.num_machines=2",
            "training.gradient_accumulation_steps=3",
            *(["peft=qlora"] if strategy == "fsdp_qlora" else []),
            *(["peft.modules_to_save=null"] if strategy in distributed.FSDP else []),
        ]
    )
    generated = distributed.accelerate_config(cfg, gpus=4)
    assert generated["num_processes"] == 8 and generated["num_machines"] == 2
    assert generated["use_cpu"] is False  # use_cpu makes accelerate start a single process
    if strategy == "ddp":
        assert generated["distributed_type"] == "MULTI_GPU"
    elif strategy in distributed.DEEPSPEED:
        ds = generated["deepspeed_config"]
        assert generated["distributed_type"] == "DEEPSPEED"
        assert ds["zero_stage"] == (2 if strategy == "zero2" else 3)
        assert ds["gradient_accumulation_steps"] == 3
        assert ds["zero3_save_16bit_model"] == (ds["zero_stage"] == 3)
        assert ds["offload_optimizer_device"] == ("cpu" if strategy == "zero3_offload" else "none")
        assert ds["offload_param_device"] == ("cpu" if strategy == "zero3_offload" else "none")
    else:
        fsdp = generated["fsdp_config"]
        assert generated["distributed_type"] == "FSDP"
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
        assert fsdp["fsdp_cpu_ram_efficient_loading"] is True
    # accelerate itself accepts the file
    from accelerate.commands.config.config_args import ClusterConfig

    ClusterConfig(**generated)


def test_top_level_accelerate_config_is_multi_process_ddp():
    shipped = yaml.safe_load((Path(__file__).parents[1] / "accelerate_config.yaml").read_text())
    assert shipped["distributed_type"] == "MULTI_GPU" and shipped["use_cpu"] is False


@pytest.mark.parametrize(
    "override, message",
    [
        (["distributed=fsdp_qlora", "peft=qlora", "peft.modules_to_save=null"], "FSDP through Accelerate needs GPUs"),
        (["distributed=ddp"], "set distributed.num_processes=N"),
        (["distributed=ddp", "distributed.num_processes=1", "distributed.num_machines=2"], "needs one run directory"),
    ],
)
def test_launch_rules_on_a_cpu_machine(override, message, tmp_path):
    result = run_ft("train", *override, f"training.output_dir={tmp_path}")
    assert_refused(result.returncode, result.stderr, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["peft=qlora", "distributed=zero3"], "partitions every parameter"),
        (["peft=qlora", "distributed=zero3_offload"], "partitions every parameter"),
        (["peft=qlora", "distributed=fsdp"], "use distributed=fsdp_qlora"),
        (["peft=qlora_8bit", "distributed=fsdp_qlora"], "cannot shard an 8-bit base"),
        (["distributed=fsdp_qlora"], "use it with peft=qlora"),
        (
            [
                "peft=qlora",
                "distributed=fsdp_qlora",
                "peft.bnb_4bit_compute_dtype=bfloat16",
                "peft.bnb_4bit_quant_storage=uint8",
            ],
            "bnb_4bit_quant_storage equal to the compute dtype",
        ),
    ],
)
def test_quantized_base_rules(overrides, message):
    with pytest.raises(FtError, match=message):
        config.compose(overrides)


def test_sample_generation_is_refused_with_sharded_weights():
    with pytest.raises(FtError, match="generates on rank 0 alone"):
        config.compose(["distributed=zero3", "callbacks.sample_prompts=[hello]"])


def test_fsdp_qlora_stores_4bit_weights_in_the_compute_dtype():
    from ft import models

    cfg = config.compose(["peft=qlora", "distributed=fsdp_qlora", "peft.modules_to_save=null"])
    assert models.quantization_config(cfg.peft, torch.bfloat16, fsdp=True).bnb_4bit_quant_storage == torch.bfloat16
    assert models.quantization_config(cfg.peft, torch.bfloat16).bnb_4bit_quant_storage == torch.uint8


def test_a_fully_trained_lm_head_is_refused_under_an_fsdp_launch_of_the_users_own(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # as accelerate launch sets it from an FSDP config
    with pytest.raises(FtError, match="cannot train lm_head in full"):
        distributed_rules.check_engine(config.compose([]))  # the default recipe trains lm_head in full
    distributed_rules.check_engine(config.compose(["peft.modules_to_save=null"]))


def test_machine_rank_must_fit():
    with pytest.raises(FtError, match="machine_rank=2"):
        config.compose(["distributed.num_machines=2", "distributed.machine_rank=2"])


def test_deepspeed_and_fsdp_are_exclusive(monkeypatch):
    cfg = config.compose(["distributed=zero3"])
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(FtError, match="accelerate launched FSDP"):
        distributed_rules.check_engine(cfg)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(FtError, match="exclusive"):
        distributed_rules.check_engine(config.compose([]))


def test_sbatch_script(tmp_path):
    out = tmp_path / "job.sbatch"
    result = run_ft(
        "sbatch",
        "nodes=4",
        "gpus_per_node=8",
        "partition=gpu",
        f"output={out}",
        "recipe=default",
        "training.learning_rate=1e-4",
        "training.run_name=big",
        "distributed=zero3",
    )
    assert result.returncode == 0, result.stderr
    script = out.read_text()
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "export FT_RUN_DIR=runs/big-$SLURM_JOB_ID",
        "distributed=zero3 distributed.num_machines=4 distributed.num_processes=8",
        'distributed.machine_rank="$SLURM_NODEID"',
        "recipe=default training.learning_rate=1e-4",
    ):
        assert line in script, line
    assert subprocess.run(["bash", "-n", str(out)]).returncode == 0
    again = run_ft("sbatch", "nodes=1", "gpus_per_node=1", f"output={out}", "recipe=default")
    assert_refused(again.returncode, again.stderr, "already exists")
    typo = run_ft("sbatch", "nodes=1", "gpus_per_node=1", "training.leraning_rate=1")
    assert_refused(typo.returncode, typo.stderr, "learning_rate")


# --- real processes -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_equals_single_process_with_doubled_batch(tmp_path):
    """2 ranks at batch 4 give the per-step losses of 1 process at batch 8. Both runs use one empty
    preprocessing cache: under DDP one rank tokenizes and the other loads its result, and the single
    process then reuses the cached datasets instead of tokenizing again."""
    port, cache = free_port(), f"data.cache.dir={tmp_path / 'cache'}"
    ddp = run_ft(
        "train",
        *SMALL,
        cache,
        "distributed=ddp",
        "distributed.num_processes=2",
        f"distributed.main_process_port={port}",
        "training.per_device_train_batch_size=4",
        f"training.output_dir={tmp_path}",
        "training.run_name=ddp",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "ft: launching 2 processes" in ddp.stdout and "accelerate.commands.launch" in ddp.stdout
    assert "world size 2" in ddp.stdout  # not just an exit code: accelerate can silently start one
    assert "identical on every rank" in ddp.stdout
    assert ddp.stderr.count("Tokenizing train dataset:   0%") == 1  # rank 1 loaded rank 0's tokenization
    assert ddp.stdout.count("tokenized dataset cached as") == 1
    single = run_ft(
        "train",
        *SMALL,
        cache,
        "training.per_device_train_batch_size=8",
        f"training.output_dir={tmp_path}",
        "training.run_name=single",
        warm=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert single.stderr.count("Tokenizing train dataset") == 0 and "reused" in single.stdout
    ddp_losses, single_losses = step_losses(tmp_path / "ddp"), step_losses(tmp_path / "single")
    assert len(ddp_losses) == len(single_losses) == 4
    assert max(abs(a - b) for a, b in zip(ddp_losses, single_losses)) <= 1e-5, (ddp_losses, single_losses)


def _launch_command(tmp_path, strategy, script, *args, machines: int = 1) -> list[str]:
    """`accelerate launch` of a script on 2 processes (on `machines` nodes) with ft's accelerate config."""
    companions = ["peft.modules_to_save=null"] if strategy in distributed.FSDP else []  # FSDP refuses a full lm_head
    companions += ["peft=qlora"] if strategy == "fsdp_qlora" else []
    cfg = config.compose(
        [
            f"distributed={strategy}",
            f"distributed.num_processes={2 // machines}",
            f"distributed.num_machines={machines}",
            f"distributed.main_process_port={free_port()}",
            *companions,
        ]
    )
    config_file = tmp_path / f"{strategy}-{machines}.yaml"
    config_file.write_text(yaml.safe_dump(distributed.accelerate_config(cfg, gpus=0)))
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), str(script), *args]


def _accelerate_launch(tmp_path, strategy, script, *args, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        _launch_command(tmp_path, strategy, script, *args), capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _launch_worker(tmp_path, strategy, run_name, *overrides, env=None):
    out = tmp_path / f"{strategy}.pt"
    run = [*SMALL, f"training.output_dir={tmp_path}", f"training.run_name={run_name}", *overrides]
    _accelerate_launch(tmp_path, strategy, WORKER, str(out), *run, env=env)
    return torch.load(out), tmp_path / run_name


def _assert_adapter_reloads_to(logits, run_dir, prompts, tiny_model_path):
    """The saved adapter, loaded into the base in one process, gives the logits the trained model gave."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (run_dir / "adapter_model.safetensors").stat().st_size > 100_000  # not empty, not missing
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), run_dir).eval()
    with torch.no_grad():
        reloaded = model(**tokenizer(prompts, return_tensors="pt", padding=True)).logits
    assert (reloaded - logits).abs().max().item() <= 1e-5


@pytest.mark.slow
@pytest.mark.distributed
def test_dpo_under_zero2_saves_a_full_adapter_and_every_rank_destroys_its_process_group(tmp_path, tiny_model_path):
    """One 2-rank launch for three things. A task beside SFT trains on 2 ranks through the session every
    task shares (whose DDP equality test_ddp_equals_single_process_with_doubled_batch proves): DPO.
    ZeRO-2 trains and saves the whole adapter (ZeRO-2 shards optimizer state and gradients, not weights;
    the sharded weights of ZeRO-3 are the case where the saved adapter is checked against the logits, below).
    And every rank destroys its gloo group: a rank that exits with it alive can abort (SIGABRT) in the
    interpreter's teardown, which made the two-node test fail now and then (a race; its cause is not)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    script = tmp_path / "train_then_report.py"
    script.write_text(
        "import os, sys\n"
        "import torch.distributed\n"
        "from ft import config\n"
        "from ft.training import launch\n"
        "launch.run(config.compose(sys.argv[1:]), sys.argv[1:])\n"
        "alive = torch.distributed.is_initialized()\n"
        "sys.stdout.flush()\n"  # then one write, so that the other rank's output cannot land inside the line
        "os.write(1, f'process group alive after training: {alive}\\n'.encode())\n"
    )
    run = [*SMALL, "training.max_steps=2", f"training.output_dir={tmp_path}", "training.run_name=dpo"]
    result = _accelerate_launch(tmp_path, "zero2", script, "recipe=tiny_dpo", "distributed=zero2", *run)
    assert result.stdout.count("process group alive after training: False") == 2, result.stdout[-3000:]
    assert "world size 2" in result.stdout and "identical on every rank" in result.stdout, result.stdout[-3000:]
    run_dir = tmp_path / "dpo"
    assert "TRL's DPOTrainer" in (run_dir / "README.md").read_text()
    assert (run_dir / "adapter_model.safetensors").stat().st_size > 100_000
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), run_dir)
    assert any("lora_B" in name and p.abs().max() > 0 for name, p in model.named_parameters())  # it trained


@pytest.mark.slow
@pytest.mark.distributed
def test_zero3_saves_a_full_adapter_that_reloads(tmp_path, tiny_model_path):
    rank0, run_dir = _launch_worker(tmp_path, "zero3", "zero3")
    assert rank0["world_size"] == 2
    _assert_adapter_reloads_to(rank0["logits"], run_dir, rank0["prompts"], tiny_model_path)  # not ZeRO-3's 40 bytes


FSDP_ON_CPU = Path(__file__).with_name("fsdp_on_cpu")  # the test-only shim: see its sitecustomize.py
FSDP_ENV = os.environ | {"FT_TEST_FSDP_ON_CPU": "1", "PYTHONPATH": os.pathsep.join([str(FSDP_ON_CPU), *sys.path])}
ADAPTER = "adapter_model.safetensors"
NO_FULL_HEAD = "peft.modules_to_save=null"  # the default recipe trains lm_head in full, which FSDP refuses


def _single_process_run(tmp_path, name, *overrides):
    single = run_ft(
        "train", *SMALL, *overrides, f"training.output_dir={tmp_path}", f"training.run_name={name}", warm=True
    )
    assert single.returncode == 0, single.stderr[-3000:]
    return tmp_path / name


def _assert_same_losses(run_dir, reference_dir, tolerance):
    losses, reference = step_losses(run_dir), step_losses(reference_dir)
    assert len(losses) == len(reference) == 4
    assert max(abs(a - b) for a, b in zip(losses, reference)) <= tolerance, (losses, reference)


def _assert_kill_9_after_checkpoint_2_resumes_to(run_dir, tmp_path, strategy, *overrides):
    """The run of `overrides` launched again, every process killed with SIGKILL once its sharded checkpoint-2 is
    complete, then launched once more: it resumes and ends with the losses and adapter of `run_dir`, the same
    run uninterrupted."""
    from safetensors.torch import load_file

    overrides = [*SMALL, *overrides, f"training.output_dir={tmp_path}", f"training.run_name={strategy}-killed"]
    command = _launch_command(tmp_path, strategy, WORKER, str(tmp_path / "killed.pt"), *overrides)
    killed, log_file = tmp_path / f"{strategy}-killed", tmp_path / f"{strategy}-killed.log"
    with open(log_file, "w") as log:
        launch = subprocess.Popen(command, env=FSDP_ENV, stdout=log, stderr=subprocess.STDOUT)
        while resume.incomplete_reason(killed / "checkpoint-2") is not None:
            assert launch.poll() is None, log_file.read_text()[-3000:]
            time.sleep(0.005)
        # the launcher and both ranks (torch's elastic agent starts the ranks in sessions of their own)
        processes = [psutil.Process(launch.pid), *psutil.Process(launch.pid).children(recursive=True)]
        for process in processes:
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=30)
    assert not (killed / "adapter_model.safetensors").exists(), "the run finished before the kill"
    resumed = _accelerate_launch(tmp_path, strategy, WORKER, str(tmp_path / "resumed.pt"), *overrides, env=FSDP_ENV)
    assert f"ft: resuming from {killed / 'checkpoint-'}" in resumed.stdout, resumed.stdout[-3000:]
    _assert_same_losses(killed, run_dir, 1e-6)
    ended, uninterrupted = load_file(killed / ADAPTER), load_file(run_dir / ADAPTER)
    assert max((ended[k] - uninterrupted[k]).abs().max().item() for k in uninterrupted) <= 1e-6


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp2_on_two_cpu_processes_trains_like_one_and_resumes_after_kill_9(tmp_path, tiny_model_path):
    """ft's FSDP path (its generated accelerate config: FSDP2 fully_shard per decoder layer, sharded state
    dicts, CPU-RAM-efficient loading) on 2 gloo processes gives the per-step losses of 1 process at the
    doubled batch, and saves an adapter that reloads, in one process, to the sharded model's logits and to
    those of the same run under DDP. The final save once wrote no adapter at all under FSDP (found on a GPU:
    the sharded state-dict type reached Trainer.save_model, which then saves nothing). Accelerate runs FSDP
    on GPUs only, so the launched processes import the test shim in tests/fsdp_on_cpu.

    Then the same run is killed with SIGKILL (every process of the launch) once its sharded checkpoint-2 is
    complete, resumed, and ends where the uninterrupted run ended. ft once took FSDP's checkpoints (folders
    of torch.distributed.checkpoint shards, no optimizer.pt) for incomplete and silently started again from
    step 0."""
    run = [NO_FULL_HEAD, "training.per_device_train_batch_size=4"]
    checkpointed = [*run, "training.save_strategy=steps", "training.save_steps=1"]
    rank0, run_dir = _launch_worker(tmp_path, "fsdp", "fsdp", *checkpointed, env=FSDP_ENV)
    assert rank0["world_size"] == 2 and rank0["fsdp"]  # sharded by FSDP, not silently DDP
    _assert_adapter_reloads_to(rank0["logits"], run_dir, rank0["prompts"], tiny_model_path)
    ddp, _ = _launch_worker(tmp_path, "ddp", "ddp", *run)
    assert not ddp["fsdp"]
    _assert_adapter_reloads_to(ddp["logits"], run_dir, ddp["prompts"], tiny_model_path)
    _assert_same_losses(
        run_dir, _single_process_run(tmp_path, "single", NO_FULL_HEAD, "training.per_device_train_batch_size=8"), 1e-5
    )

    _assert_kill_9_after_checkpoint_2_resumes_to(run_dir, tmp_path, "fsdp", *checkpointed)


@pytest.mark.slow
@pytest.mark.distributed
def test_full_fine_tune_under_fsdp2_trains_like_one_process_and_saves_the_whole_model(tmp_path):
    """Every weight sharded and trained (a full fine-tune) on 2 processes: the losses of 1 process at the
    doubled batch, and the saved model, gathered from the shards, gives the sharded model's logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rank0, run_dir = _launch_worker(
        tmp_path, "fsdp", "fsdp-full", "recipe=tiny_full", "training.per_device_train_batch_size=4", env=FSDP_ENV
    )
    assert rank0["world_size"] == 2 and rank0["fsdp"]
    single = _single_process_run(tmp_path, "single", "recipe=tiny_full", "training.per_device_train_batch_size=8")
    _assert_same_losses(run_dir, single, 1e-5)
    model = AutoModelForCausalLM.from_pretrained(run_dir).eval()
    batch = AutoTokenizer.from_pretrained(run_dir)(rank0["prompts"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert (model(**batch).logits - rank0["logits"]).abs().max().item() <= 1e-5


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_qlora_on_two_cpu_processes_stores_4_bits_in_the_compute_dtype_and_trains_like_one(tmp_path):
    """FSDP shards parameters of one dtype, so under distributed=fsdp_qlora the packed 4-bit weights are
    stored in the compute dtype (float32 here): still half a byte per weight. The 2-process run gives the
    per-step losses of 1 process at the doubled batch; its adapter, reloaded on the 4-bit base as
    `ft generate` loads it, gives the sharded model's logits and a DDP run's; and a kill -9 after
    checkpoint-2 resumes to the uninterrupted run."""
    from ft.finish import loading

    run = ["peft=qlora", NO_FULL_HEAD, "training.per_device_train_batch_size=4"]
    checkpointed = [*run, "training.save_strategy=steps", "training.save_steps=1"]
    rank0, run_dir = _launch_worker(tmp_path, "fsdp_qlora", "fsdp-qlora", *checkpointed, env=FSDP_ENV)
    assert rank0["world_size"] == 2 and rank0["fsdp"]
    assert rank0["4bit_storage_dtypes"] == {"torch.float32"} and rank0["bytes_per_4bit_weight"] == 0.5
    single = _single_process_run(
        tmp_path, "single", "peft=qlora", NO_FULL_HEAD, "training.per_device_train_batch_size=8"
    )
    _assert_same_losses(run_dir, single, 1e-5)
    ddp, _ = _launch_worker(tmp_path, "ddp", "ddp-qlora", *run)
    assert ddp["4bit_storage_dtypes"] == {"torch.uint8"}  # without FSDP, bitsandbytes' own storage
    reloaded = loading.load_model(run_dir, loading.load_config(run_dir), device_map=None)
    batch = loading.load_tokenizer(run_dir)(rank0["prompts"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = reloaded(**batch).logits
    assert (logits - rank0["logits"]).abs().max().item() <= 1e-5
    assert (logits - ddp["logits"]).abs().max().item() <= 1e-5
    _assert_kill_9_after_checkpoint_2_resumes_to(run_dir, tmp_path, "fsdp_qlora", *checkpointed)


def _run_nodes(commands: list[list[str]], env=None) -> str:
    """One command per "node" (machine rank), all at once on this machine; returns machine 0's output."""
    nodes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    return outputs[0][0]


@pytest.mark.slow
@pytest.mark.distributed
def test_dpo_under_fsdp_on_two_nodes_on_localhost(tmp_path, tiny_model_path):
    """Two "nodes" of one process each (two accelerate launches with machine ranks 0 and 1, one rendezvous
    on localhost), sharded by FSDP, training DPO: the second task through ft's FSDP path, and a multi-node
    FSDP launch. The adapter reloads to the sharded model's logits."""
    name = "dpo-two-nodes"
    run = ["recipe=tiny_dpo", *SMALL, NO_FULL_HEAD, f"training.output_dir={tmp_path}", f"training.run_name={name}"]
    command = _launch_command(tmp_path, "fsdp", WORKER, str(tmp_path / "rank0.pt"), *run, machines=2)
    _run_nodes([[*command[:5], "--machine_rank", str(rank), *command[5:]] for rank in (0, 1)], env=FSDP_ENV)
    rank0 = torch.load(tmp_path / "rank0.pt")
    assert rank0["world_size"] == 2 and rank0["fsdp"]
    assert "TRL's DPOTrainer" in (tmp_path / name / "README.md").read_text()
    _assert_adapter_reloads_to(rank0["logits"], tmp_path / name, rank0["prompts"], tiny_model_path)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_nodes_on_localhost_train_together(tmp_path):
    port = free_port()
    common = [
        "distributed=ddp",
        "distributed.num_machines=2",
        "distributed.num_processes=1",
        f"distributed.main_process_port={port}",
        *SMALL,
        f"training.output_dir={tmp_path}",
        "training.run_name=two-nodes",
    ]
    rank0_output = _run_nodes(
        [[sys.executable, "-m", "ft", "train", *common, f"distributed.machine_rank={rank}"] for rank in (0, 1)]
    )
    assert "world size 2" in rank0_output
    assert "identical on every rank" in rank0_output
    assert (tmp_path / "two-nodes" / "adapter_model.safetensors").is_file()
