"""Every rule ft checks, grouped by topic in this package and run in phases, each phase as soon as
its facts are known, so that a mistake stops the run before anything expensive (or irreversible):

    check_config(cfg)                    the config alone             ft.config.compose
    check_machine(cfg, hw)               this machine and packages    before the run dir; no model library imported
    check_inputs(cfg)                    model and data reachable     before the run dir
    check_model_config(cfg, config)      the architecture             before the weights load
    check_loaded_model(cfg, model)       the loaded modules           before the adapter is attached
    check_trainer(trainer, cfg, ...)     tokenized data, disk space   before the first step (lengths, trained share)

A failed rule raises FtError: one line naming the problem and the fix (the CLI exits with code 2).
"""

from pathlib import Path

from ft.config import registry
from ft.data import is_conversational
from ft.rules import combinations, distributed, inputs, machine, model, tasks, trainer, values


def check_config(cfg) -> None:
    tasks.check_sections(cfg, registry.get(cfg.task))  # first: the task's own section filled in, others refused
    values.check_values(cfg)
    distributed.check_config(cfg)
    combinations.check_combinations(cfg)
    inputs.check_offline_model(cfg)
    tasks.check_task(cfg)


def check_machine(cfg, hw, launching: bool = False) -> None:
    """`launching`: before ft relaunches itself under accelerate; otherwise inside the training process."""
    if launching:
        distributed.check_launch(cfg, hw.num_gpus)
    else:
        distributed.check_engine(cfg)
    machine.check_requirements(cfg, hw)
    task = registry.get(cfg.task)
    if task.check_machine is not None:
        task.check_machine(cfg, hw)


def check_inputs(cfg) -> None:
    inputs.check_model_kind(cfg)
    inputs.check_sources(cfg)
    task = registry.get(cfg.task)
    if task.check_inputs is not None:
        task.check_inputs(cfg)


def check_model_config(cfg, model_config) -> None:
    model.check_architecture(cfg.peft, model_config, cfg.model.name_or_path)


def check_loaded_model(cfg, loaded_model) -> None:
    model.check_target_modules(cfg.peft, loaded_model)
    model.check_fused_experts(cfg.peft, loaded_model)
    model.check_quantized_experts(cfg, loaded_model)


def check_trainer(trainer_, cfg, run_dir: Path, num_examples: int, trained_share: bool = False) -> None:
    """`trained_share`: the task masks the loss to the assistant's tokens (SFT); check each example's share."""
    trainer.lengths(trainer_.train_dataset, num_examples, cfg.training.max_length, cfg.training.packing)
    if trained_share and cfg.training.assistant_only_loss and is_conversational(cfg.data.format):
        trainer.trained_share(trainer_.train_dataset, cfg.training.packing)
    trainer.disk_space(trainer_, cfg, run_dir, num_examples)
