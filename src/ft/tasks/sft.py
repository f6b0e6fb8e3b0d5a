"""`ft train` with task=sft: the whole training path, top to bottom.

checks (engine, hardware, model reachable) -> run dir (new, resumed or replaced; rank 0 decides) ->
data -> tokenizer -> model (quantized for QLoRA) -> PEFT config -> SFTConfig (ft.tasks.sft_args) ->
SFTTrainer + callbacks -> train (untrained eval at step 0, preemption-safe) -> evaluate ->
save adapter + tokenizer -> metrics, loss plot, model card, optional push (rank 0).
The steps every task shares are in ft.tasks.build.
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import hardware, session
from ft.tasks import build, sft_args


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready SFTTrainer (data prepared, model wrapped); nothing trained yet."""
    from trl import SFTTrainer

    from ft.run import callbacks

    hw = hardware.detect()
    train_dataset, eval_dataset, tokenizer = build.inputs(cfg)
    args = sft_args.sft_config(cfg, hw, run_dir, has_eval=eval_dataset is not None, resuming=resuming)
    base = build.base_model(cfg, hw)
    build.logging_env(cfg, run_dir)
    trainer = SFTTrainer(
        model=base.model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=build.peft_config(cfg, base, len(train_dataset)),
        callbacks=callbacks.build(cfg, run_dir),
    )
    return build.finish(trainer, cfg, base, run_dir, len(train_dataset))


def train(cfg, command: list[str] | None = None) -> session.Result:
    run = session.start(cfg, command)
    with run.setup():
        trainer = build_trainer(cfg, run.run_dir, resuming=run.resuming)
    return run.train(trainer)
