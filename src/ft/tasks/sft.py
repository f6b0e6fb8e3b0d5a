"""`ft train` with task=sft: the whole training path, top to bottom.

checks (engine, hardware, model reachable) -> run dir (new, resumed or replaced; rank 0 decides) ->
data -> tokenizer -> model (quantized for QLoRA) -> PEFT config -> SFTConfig (ft.tasks.sft_args) ->
SFTTrainer + callbacks -> train (untrained eval at step 0, preemption-safe) -> evaluate ->
save adapter + tokenizer -> metrics, loss plot, model card, optional push (rank 0).
The steps every task shares are in ft.tasks.build.
"""

from pathlib import Path

# Only light modules here: train() runs its quick checks before transformers (and bitsandbytes) load.
from ft.run import session
from ft.tasks import build, sft_args


def build_trainer(cfg, run_dir: Path, resuming: bool = False):
    """Everything up to a ready SFTTrainer (data prepared, model wrapped); nothing trained yet."""
    from trl import SFTTrainer

    from ft.data import templates

    return build.trainer(
        SFTTrainer, sft_args.sft_config, cfg, run_dir, resuming, prepare=templates.prepare, cached=True
    )


def train(cfg, command: list[str] | None = None) -> session.Result:
    return session.train(cfg, command, build_trainer)
