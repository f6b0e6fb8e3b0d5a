"""Trainer callbacks that ft adds to SFTTrainer; `build_callbacks(cfg)` picks them from the config."""

from transformers import TrainerCallback

from ft import adapters


class AdaLoraRankCallback(TrainerCallback):
    """Drives AdaLoRA's rank allocation, which the Trainer never calls.

    PEFT's contract: `update_and_allocate(step)` after `backward()` and before `zero_grad()`, every
    step. `on_optimizer_step` runs right after `optimizer.step()` and before `model.zero_grad()`, so
    the gradients it needs are still there. The current rank budget (ranks left across all adapted
    layers) goes into every log entry as `adalora_rank_budget`.
    """

    def __init__(self, peft_cfg):
        self.peft_cfg = peft_cfg

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # The config was built from an estimate of the run length; the Trainer now knows it exactly
        # (packing, for one, changes the number of batches).
        config = model.peft_config[model.active_adapter]
        if state.max_steps != config.total_step:
            config.tinit, config.tfinal = adapters.adalora_schedule(self.peft_cfg, state.max_steps)
            config.total_step = state.max_steps

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if state.log_history and logs is not None and "loss" in logs:
            budget = rank_budget(model)
            state.log_history[-1]["adalora_rank_budget"] = budget
            print(f"ft: step {state.global_step}: AdaLoRA rank budget {budget}", flush=True)


def rank_budget(model) -> int:
    """Ranks currently kept across all AdaLoRA layers (the initial budget until the first pruning)."""
    config = model.peft_config[model.active_adapter]
    if config.rank_pattern:
        return int(sum(sum(mask) for mask in config.rank_pattern.values()))
    return model.base_model.rankallocator.init_bgt


def build_callbacks(cfg) -> list:
    callbacks = []
    if cfg.peft.method == "adalora":
        callbacks.append(AdaLoraRankCallback(cfg.peft))
    return callbacks
