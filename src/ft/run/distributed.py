"""Scaling out through Accelerate: the accelerate config for each `distributed` option, the relaunch
of `python -m ft train` under `accelerate launch`, and the rank-safety helpers the training path
uses (one shared run dir, main-process-first data preparation, barriers that say who is missing).

Nothing here launches processes by hand: `accelerate launch` (torchrun / the DeepSpeed launcher
underneath) does. ft only composes its config file and command line.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from ft.config.schema import STRATEGIES, DistributedConfig, FtConfig  # noqa: F401 (STRATEGIES: ft's list of them)
from ft.errors import FtError
from ft.run.rundir import LAUNCH_CONFIG, RUN_DIR_ENV

DEEPSPEED = {"zero2", "zero3", "zero3_offload"}
FSDP = {"fsdp", "fsdp_qlora"}


def is_launched() -> bool:
    """True inside a process started by accelerate launch / torchrun / deepspeed."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def fsdp_launched() -> bool:
    """True inside processes that accelerate launched with FSDP (ft's config or the user's own)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def sharded_by_fsdp(cfg: FtConfig) -> bool:
    """FSDP shards this run: ft's distributed=fsdp/fsdp_qlora, or an accelerate FSDP config of the user's own."""
    return cfg.distributed.strategy in FSDP or fsdp_launched()


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def processes_per_machine(dist: DistributedConfig, gpus: int) -> int:
    if dist.num_processes is not None:
        return dist.num_processes
    if gpus == 0:
        raise FtError(
            f"distributed={dist.strategy} on a machine without GPUs: set distributed.num_processes=N "
            "to run N CPU processes (gloo)"
        )
    return gpus


def accelerate_config(cfg: FtConfig, gpus: int) -> dict:
    """The accelerate config file contents for cfg.distributed (node-independent: the machine rank
    goes on the command line, so every node of a multi-node run writes the same file)."""
    dist = cfg.distributed
    per_machine = processes_per_machine(dist, gpus)
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        # MULTI_GPU even on CPU: accelerate's --cpu / use_cpu path silently starts ONE process.
        # Without CUDA the processes fall back to gloo.
        "distributed_type": "MULTI_GPU",
        "num_machines": dist.num_machines,
        "num_processes": per_machine * dist.num_machines,
        "machine_rank": 0,
        "main_process_ip": dist.main_process_ip,
        "main_process_port": dist.main_process_port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": "no",  # the trainer's bf16/fp16 arguments decide precision
        "use_cpu": False,
    }
    if dist.strategy in DEEPSPEED:
        stage = 2 if dist.strategy == "zero2" else 3
        offload = "cpu" if dist.strategy == "zero3_offload" else "none"
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {
            "zero_stage": stage,
            "offload_optimizer_device": offload,
            "offload_param_device": offload if stage == 3 else "none",
            "zero3_init_flag": stage == 3,
            "zero3_save_16bit_model": stage == 3,  # gather the weights on save: no empty adapters
            "gradient_accumulation_steps": cfg.training.gradient_accumulation_steps,
            "gradient_clipping": cfg.optim.max_grad_norm,
        }
    elif dist.strategy in FSDP:
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_reshard_after_forward": True,  # FULL_SHARD
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # layer classes from _no_split_modules
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": False,
            "fsdp_activation_checkpointing": False,
        }
    return config


def launch_command(cfg: FtConfig, config_file: Path, overrides: list[str]) -> list[str]:
    dist = cfg.distributed
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "--machine_rank",
        str(dist.machine_rank),
        "-m",
        "ft",
        "train",
        *overrides,
    ]


def relaunch(cfg: FtConfig, run_dir: Path, overrides: list[str], gpus: int) -> int:
    """Run `accelerate launch ... -m ft train <overrides>` with a generated config; returns its
    exit code. Every process it starts uses run_dir (passed down in FT_RUN_DIR)."""
    import yaml

    config = accelerate_config(cfg, gpus)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / LAUNCH_CONFIG
    staging = config_file.with_name(f".{LAUNCH_CONFIG}.{os.getpid()}")
    staging.write_text(yaml.safe_dump(config, sort_keys=False))
    staging.replace(config_file)  # atomic: nodes sharing the run dir write the same content
    command = launch_command(cfg, config_file, overrides)
    print(
        f"ft: launching {config['num_processes']} processes on {cfg.distributed.num_machines} machine(s):", flush=True
    )
    print(f"ft:   {RUN_DIR_ENV}={shlex.quote(str(run_dir))} {shlex.join(command)}", flush=True)
    return subprocess.run(command, env={**os.environ, RUN_DIR_ENV: str(run_dir)}).returncode


# --- inside the launched processes -----------------------------------------------------------


def state(timeout_s: int, cpu: bool):
    """Accelerate's PartialState (initialises the process group once, with ft's timeout). On CPU it
    must be told so, or each launched process believes it is alone."""
    from datetime import timedelta

    from accelerate import PartialState

    return PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))


def shared_value(value, state):
    """Rank 0's value on every rank (e.g. a timestamped run dir name)."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def wait_for_everyone(state, phase: str, timeout_s: int) -> None:
    """A barrier that, when it times out, says which rank waited where."""
    if state.num_processes == 1:
        return
    try:
        state.wait_for_everyone()
    except Exception as e:  # torch raises DistBackendError / RuntimeError on a timed-out barrier
        raise FtError(
            f"rank {state.process_index} of {state.num_processes} waited more than {timeout_s}s for the "
            f"other ranks at '{phase}' and gave up ({type(e).__name__}); a rank crashed or never started "
            "(check every node's log, main_process_ip/port and the firewall)"
        ) from None


def close() -> None:
    """Destroy this process's process group, if it has one, while Python is still fully alive. A
    process that exits with its gloo group alive can abort with SIGABRT ("terminate called without an
    active exception") as the interpreter tears down (pytorch/pytorch#179291); torch asks every
    process to call destroy_process_group at the end."""
    if "torch" not in sys.modules:  # nothing was set up
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_for_final_save(trainer) -> None:
    """FSDP checkpoints stay sharded (each rank resumes its own shard), but the finished run's adapter must
    be one file that PEFT loads: the final save gathers the full state dict. Without this, FSDP's
    SHARDED_STATE_DICT writes a distributed checkpoint folder and no adapter_model.safetensors."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")


def parameter_checksum(model) -> float:
    import torch

    with torch.no_grad():
        return float(sum(p.detach().float().sum().item() for p in model.parameters() if p.requires_grad))


def report_ranks(trainer, ranks) -> None:
    """With several processes: say how many trained, and check they hold the same weights."""
    if ranks.num_processes == 1:
        return
    from accelerate.utils import gather_object

    sharded = trainer.is_fsdp_enabled or (
        trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    )
    checksums = gather_object([None if sharded else parameter_checksum(trainer.model)])
    if not ranks.is_main_process:
        return
    print(f"ft: trained on {ranks.num_processes} processes (world size {ranks.num_processes})", flush=True)
    if not sharded:
        if max(checksums) - min(checksums) <= 1e-6 * max(1.0, abs(checksums[0])):
            print(f"ft: trainable parameters identical on every rank (checksum {checksums[0]:.6f})", flush=True)
        else:
            print(f"ft: warning: trainable parameters differ between ranks: {checksums}", flush=True)
