"""MoE QLoRA memory (issue 27): the bytes a 4-bit base holds, and its fused experts' share, with
peft.quantize_experts=false (bitsandbytes alone: experts in bf16) and true (ft's 4-bit experts), and the
time of a training forward + backward through the base both ways.

    python bench/moe_memory.py

Shapes: ft's tiny qwen3_moe and mixtral (model.tiny defaults: hidden 256, 4 layers, 4 experts of width
344), and a larger Qwen3-MoE shape (hidden 512, 4 layers, 16 experts of width 1024) built from config.
"""

import statistics
import tempfile
import time

import torch

from ft import config, models
from ft.models import experts

LARGER = dict(hidden_size=512, num_hidden_layers=4, num_experts=16, moe_intermediate_size=1024, intermediate_size=2048)


def stored_bytes(param) -> int:
    """What a parameter occupies: 4-bit weights with their quantization statistics."""
    if isinstance(param, experts.Packed4bitExperts):
        return param.stored_bytes()
    size = param.numel() * param.element_size()
    state = getattr(param, "quant_state", None)  # a Linear4bit weight
    if state is not None:
        size += state.absmax.numel() * state.absmax.element_size()
        if state.nested:
            size += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return size


def measure(model) -> dict:
    fused = [p for p in model.parameters() if p.dim() == 3]
    return {
        "base": sum(stored_bytes(p) for p in model.parameters()),
        "experts": sum(stored_bytes(p) for p in fused),
    }


def step_seconds(model, repeats: int = 3) -> float:
    """Median wall time of a forward + backward (into the input embeddings: the base is frozen)."""
    ids = torch.randint(0, model.config.vocab_size, (4, 128))
    times = []
    for _ in range(repeats):
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        start = time.perf_counter()
        model(inputs_embeds=embeds, labels=ids).loss.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load(model_overrides: list[str], quantize: bool):
    cfg = config.compose(["peft=qlora", *model_overrides, f"peft.quantize_experts={str(quantize).lower()}"])
    quantization = models.quantization_config(cfg.peft, torch.bfloat16)
    model = models.load_model(cfg.model, torch.bfloat16, quantization_config=quantization)
    models.disable_4bit_cpu_repack(model)
    models.quantize_experts(model, cfg.peft)
    return model


def larger_model_dir(root: str) -> str:
    from transformers import AutoModelForCausalLM

    tiny = models.load_config(config.compose(["model.tiny.family=qwen3_moe"]).model)
    for key, value in LARGER.items():
        setattr(tiny, key, value)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny, dtype=torch.bfloat16).save_pretrained(root)
    return root


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        shapes = {
            "tiny qwen3_moe": ["model.tiny.family=qwen3_moe"],
            "tiny mixtral": ["model.tiny.family=mixtral"],
            "Qwen3-MoE, 16 experts, hidden 512": [f"model.name_or_path={larger_model_dir(root)}"],
        }
        print("| model | quantize_experts | base | experts | experts vs bf16 | forward + backward |")
        print("|---|---|---|---|---|---|")
        for name, overrides in shapes.items():
            bf16 = None
            for quantize in (False, True):
                model = load(overrides, quantize)
                sizes, seconds = measure(model), step_seconds(model)
                bf16 = bf16 or sizes["experts"]
                print(
                    f"| {name} | {str(quantize).lower()} | {sizes['base'] / 1e6:.2f} MB | "
                    f"{sizes['experts'] / 1e6:.2f} MB | {100 * sizes['experts'] / bf16:.0f}% | {seconds:.3f} s |",
                    flush=True,
                )
                del model


if __name__ == "__main__":
    main()
