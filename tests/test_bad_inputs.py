"""The catalogue of bad inputs: each one gives exit code 2 and one `ft: error:` line naming the
problem and the fix, no traceback, and leaves the output directory exactly as it was.

Most entries run the CLI entry function in-process (one interpreter, so the suite stays fast); the
ones that need a different environment run it in a subprocess. A refusal made before the heavy
libraries load is the only line on stderr; one made after loading (data, tokenized lengths, disk
space) may follow library progress bars, but no other line may mention an error (conftest.assert_refused).
test_quick_refusals_come_before_the_heavy_imports shows, in fresh processes, that the first kind is
made before transformers and bitsandbytes are imported, whatever they print on import.

Every declared bound of every numeric option of the schema is checked on a schema object
(test_every_declared_bound_is_checked); one option per type and kind of bound is also a catalogue row.
To catalogue a new mistake, add a `Case`.
"""

import dataclasses
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import QUICK, assert_refused, run_ft, snapshot, write_jsonl
from ft import cli, config
from ft.config.schema import FtConfig
from ft.data import detect
from ft.errors import FtError
from ft.options import BOUNDS
from ft.rules import values

RUN = "bad"  # training.run_name of every case


def _jsonl(tmp: Path, rows: list, name: str = "data.jsonl") -> Path:
    return write_jsonl(tmp / name, rows)


def _chat(*roles: str) -> dict:
    return {"messages": [{"role": r, "content": f"{r} text"} for r in roles]}


def _messages_file(tmp: Path, bad_row: dict) -> list[str]:
    rows = [_chat("user", "assistant")] * 5 + [bad_row]
    return [f"data.source={_jsonl(tmp, rows)}", "data.eval_size=0"]


PAIR = {"prompt": "What is 1 + 1?", "chosen": "2", "rejected": "3"}  # a good preference row
UNPAIRED = {"prompt": "What is 1 + 1?", "completion": "2", "label": True}  # a good unpaired (KTO) row


IMAGES = {"images": ["cat.png"]}  # TRL's vision-language column
LLAVA = {  # a LLaVA-style row: its image, and where it goes in the conversation
    "image": "cat.png",
    "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}],
}


def _with_image_part(part: dict) -> dict:
    """A conversation whose user turn has typed parts (OpenAI's form): `part`, then a question."""
    question = [part, {"type": "text", "text": "What is this?"}]
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "A cat."}]}


def _row_3_bad(good: dict, bad: dict) -> list[dict]:
    """Eight copies of `good`, the fourth (row 3) changed by `bad`."""
    return [good] * 3 + [good | bad] + [good] * 4


def _other_adapter(tmp: Path) -> Path:
    """A LoRA adapter saved for a tiny Llama of another width."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, vocab_size=1024)
    model = get_peft_model(LlamaForCausalLM(LlamaConfig(**shape)), LoraConfig(r=4, target_modules="all-linear"))
    model.save_pretrained(tmp / "other_adapter")
    return tmp / "other_adapter"


def _existing_run(out: Path, extra: list[str], **files: str) -> list[str]:
    """A run dir as an earlier run of `extra` would have left it (config.yaml + the given files)."""
    cfg = config.compose([*QUICK, *extra, f"training.output_dir={out}", f"training.run_name={RUN}"])
    cfg = detect.resolved(cfg)
    (out / RUN).mkdir()
    (out / RUN / "config.yaml").write_text(config.to_yaml(cfg))
    for name, text in files.items():
        (out / RUN / name).write_text(text)
    return []


def _foreign_dir(out: Path) -> list[str]:
    (out / RUN).mkdir()
    (out / RUN / "notes.txt").write_text("not an ft run")
    return []


def _incomplete_checkpoint(tmp: Path) -> list[str]:
    (tmp / "checkpoint-3").mkdir()
    (tmp / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"")
    return [f"training.resume={tmp / 'checkpoint-3'}"]


def _image_folder(tmp: Path, change: str) -> list[str]:
    """An imagefolder of 4 synthetic captioned images for task=text_to_image, spoilt by `change`: missing (an
    image deleted), unreadable (an image's bytes replaced), captionless (a row without its caption)."""
    from ft.tasks.text_to_image import images

    folder = images.write_folder(images.synthetic(4, 16, seed=0), tmp / "pictures")
    if change == "missing":
        (folder / "0002.png").unlink()
    elif change == "unreadable":
        (folder / "0002.png").write_bytes(b"not a png")
    else:
        rows = (folder / "metadata.jsonl").read_text().splitlines()
        rows[2] = '{"file_name": "0002.png"}'
        (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return ["recipe=tiny_sd_lora", f"data.source={folder}"]


def _sidecar_folder(tmp: Path, change: str) -> list[str]:
    """4 synthetic images with kohya's .txt captions beside them, spoilt by `change`: captionless (a .txt
    deleted), orphan caption (a .txt without its image), corrupt (an image's bytes replaced)."""
    from ft.tasks.text_to_image import images

    folder = tmp / "pictures"
    folder.mkdir()
    for i, example in enumerate(images.synthetic(4, 16, seed=0)):
        example.image.save(folder / f"{i:04d}.png")
        (folder / f"{i:04d}.txt").write_text(example.caption)
    if change == "captionless":
        (folder / "0002.txt").unlink()
    elif change == "orphan":
        (folder / "0004.txt").write_text("a caption of no image")
    else:
        (folder / "0002.png").write_bytes(b"not a png")
    return ["recipe=tiny_sd_lora", f"data.source={folder}"]


def _image_conversations(tmp: Path, change: str) -> list[str]:
    """Eight image conversations (messages + images, paths relative to the data file) for task=vlm, row 3
    spoilt by `change`: missing (its image deleted), unreadable (its bytes replaced), mismatch (two images for
    one placeholder)."""
    from ft.tasks.vision_language import data as vision_data

    rows = []
    for index in range(8):
        vision_data.draw("red", "circle", random.Random(index)).save(tmp / f"{index}.png")
        question = [{"type": "image"}, {"type": "text", "text": "What colour is the shape?"}]
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": "red"}]
        rows.append({"messages": turns, "images": [f"{index}.png"]})
    if change == "missing":
        (tmp / "3.png").unlink()
    elif change == "unreadable":
        (tmp / "3.png").write_bytes(b"not a png")
    else:
        rows[3]["images"].append("4.png")
    return ["recipe=tiny_vlm_llava", f"data.source={_jsonl(tmp, rows)}", "data.eval_size=0"]


def _model_dir(tmp: Path, file: str) -> list[str]:
    """A local model directory holding only `file` (config.json: a transformers model; model_index.json: a
    diffusers pipeline)."""
    (tmp / "model").mkdir()
    (tmp / "model" / file).write_text("{}")
    return [f"model.name_or_path={tmp / 'model'}"]


@dataclass
class Case:
    id: str
    expected: list[str]  # substrings of the error line
    overrides: list[str] = field(default_factory=list)
    setup: Callable[[Path, Path], list[str]] | None = None  # (tmp, output_dir) -> more overrides
    env: dict | None = None  # run in a subprocess with these environment changes (None: unset)
    after_loading: bool = False  # refused after datasets / transformers loaded: their output may come first


CASES = [
    # config: before anything loads
    Case("unknown_recipe", ["unknown recipe 'no_such'", "default"], ["recipe=no_such"]),
    Case("unknown_key", ["unknown key 'training.leraning_rate'", "learning_rate"], ["training.leraning_rate=1"]),
    Case("unknown_section", ["unknown key 'nonsense.key'", "training"], ["nonsense.key=1"]),
    Case("unknown_group_option", ["unknown peft option 'lorax'", "lora", "none"], ["peft=lorax"]),
    Case("wrong_type", ["training.max_steps", "abc"], ["training.max_steps=abc"]),
    Case("bad_choice", ["model.dtype=fp8", "bfloat16"], ["model.dtype=fp8"]),
    Case("zero_rank", ["peft.r must be >= 1, got 0"], ["peft.r=0"]),
    Case(
        "bad_quant_storage",
        ["peft.bnb_4bit_quant_storage=foo", "uint8"],
        ["peft=qlora", "peft.bnb_4bit_quant_storage=foo"],
    ),
    Case(
        "scheduler_typo",
        ["training.lr_scheduler_type=cosin", "did you mean 'cosine'"],
        ["training.lr_scheduler_type=cosin"],
    ),
    Case("optimizer_typo", ["optim.name=adamw_torchh", "did you mean 'adamw_torch'"], ["optim.name=adamw_torchh"]),
    Case(
        "report_to_typo",
        ["logging.report_to: 'tensorbord'", "did you mean 'tensorboard'"],
        ["logging.report_to=[tensorbord]"],
    ),
    Case("bad_run_name", ["training.run_name", "plain directory name"], ["training.run_name=a/b"]),
    Case("resume_no_such_path", ["training.resume=/no/such/ckpt", "auto, never"], ["training.resume=/no/such/ckpt"]),
    Case("missing_local_model", ["./no/such/model", "local model directory"], ["model.name_or_path=./no/such/model"]),
    # preflight: hub, hardware
    Case(
        "hub_model_offline",
        ["ft-test/not-cached", "HF_HUB_OFFLINE=1", "hf download"],
        ["model.name_or_path=ft-test/not-cached"],
    ),
    Case(
        "hub_unreachable",
        ["ft-test/not-cached", "cannot be reached", "HF_HUB_OFFLINE=1"],
        ["model.name_or_path=ft-test/not-cached"],
        env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"},
    ),
    Case(
        "hub_dataset_offline",
        ["cannot load the hub dataset data.source=ft-test/no-data"],
        ["data.source=ft-test/no-data"],
        after_loading=True,
    ),
    Case(
        "flash_attn_on_cpu",
        ["flash_attention_2 needs a CUDA GPU", "sdpa"],
        ["model.attn_implementation=flash_attention_2"],
    ),
    Case("bf16_on_cpu", ["training.precision=bf16 needs a GPU"], ["training.precision=bf16"]),
    # the run dir
    Case(
        "unwritable_output_dir",
        ["cannot write the run directory", "training.output_dir"],
        setup=lambda tmp, out: [f"training.output_dir={_jsonl(tmp, [{}], 'a_file')}/runs"],
    ),
    Case(
        "not_an_ft_dir",
        ["already exists and was not made by ft", "training.run_name"],
        setup=lambda tmp, out: _foreign_dir(out),
    ),
    Case(
        "different_config",
        ["different config", "training.learning_rate: 0.003 -> 0.001", "training.overwrite=true"],
        ["training.learning_rate=1e-3"],
        setup=lambda tmp, out: _existing_run(out, []),
    ),
    Case(
        "finished_run",
        ["holds a finished run", "training.overwrite=true"],
        setup=lambda tmp, out: _existing_run(out, [], **{"trainer_state.json": "{}"}),
    ),
    Case(
        "resume_never_on_unfinished",
        ["unfinished run", "training.resume=auto"],
        ["training.resume=never"],
        setup=lambda tmp, out: _existing_run(out, ["training.resume=never"]),
    ),
    Case(
        "resume_incomplete_checkpoint",
        ["is not a complete checkpoint", "no trainer_state.json"],
        setup=lambda tmp, out: _incomplete_checkpoint(tmp),
    ),
    # data
    Case(
        "malformed_jsonl_line",
        ["data.jsonl line 3: invalid JSON", "fix or remove that line"],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, [_chat('user', 'assistant')] * 2 + ['{not json'])}"],
        after_loading=True,
    ),
    Case(
        "empty_dataset",
        ["has no records"],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, [])}"],
        after_loading=True,
    ),
    Case(
        "missing_column",
        ["needs column(s) ['messages']", "the data has ['prompt', 'answer']", "data.columns"],
        ["data.format=messages"],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, [{'prompt': 'p', 'answer': 'a'}] * 3)}"],
        after_loading=True,
    ),
    Case("empty_split_after_filtering", ["training split", "is empty"], ["data.max_examples=0"], after_loading=True),
    Case(
        "unknown_role",
        ["row 5", "unknown role 'bot'"],
        setup=lambda tmp, out: _messages_file(tmp, _chat("user", "bot")),
        after_loading=True,
    ),
    Case(
        "system_not_first",
        ["row 5", "system turn is only allowed first"],
        setup=lambda tmp, out: _messages_file(tmp, _chat("user", "system", "assistant")),
        after_loading=True,
    ),
    Case(
        "assistant_first",
        ["row 5", "must start with a user turn"],
        setup=lambda tmp, out: _messages_file(tmp, _chat("assistant", "user", "assistant")),
        after_loading=True,
    ),
    Case(
        "no_assistant_turn",
        ["row 5", "no assistant turn"],
        setup=lambda tmp, out: _messages_file(tmp, _chat("user")),
        after_loading=True,
    ),
    # images, which the language-model tasks do not train on (vision-language: issue 29)
    Case(
        "typed_image_part",
        ["row 5", "turn 1's 'content' part 1 is of type 'image'", "train on text only", "drop the 'image' parts"],
        setup=lambda tmp, out: _messages_file(tmp, _with_image_part({"type": "image"})),
        after_loading=True,
    ),
    Case(
        "image_url_part",
        ["row 5", "part 1 is of type 'image_url'", "train on text only"],
        setup=lambda tmp, out: _messages_file(
            tmp, _with_image_part({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}})
        ),
        after_loading=True,
    ),
    Case(
        "images_column",
        ["data row 3: the 'images' column holds an image", "train on text only", "drop the 'images' column"],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, _row_3_bad(_chat('user', 'assistant'), IMAGES))}"],
        after_loading=True,
    ),
    Case(
        "llava_file",
        ["data row 0: the 'image' column holds an image", "drop the 'image' column", "<image> placeholders"],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, [LLAVA] * 4)}"],
        after_loading=True,
    ),
    Case(
        "image_placeholder_in_sharegpt",
        ["data row 0: conversations turn 1 has an <image> placeholder", "train on text only", "drop the placeholders"],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, [{'conversations': LLAVA['conversations']}] * 4)}"],
        after_loading=True,
    ),
    Case(
        "images_for_dpo",
        ["data row 3: the 'images' column holds an image", "train on text only"],
        ["recipe=tiny_dpo", *QUICK],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, _row_3_bad(PAIR, IMAGES))}"],
        after_loading=True,
    ),
    # image conversations for a vision-language model (task=vlm)
    Case(
        "vlm_on_the_tiny_text_model",
        ["model.name_or_path=tiny is ft's tiny text model", "tiny-vlm-gemma3"],
        ["task=vlm"],
    ),
    Case(
        "vlm_model_for_sft",
        ["tiny-vlm-llava is a vision-language model", "use task=vlm"],
        ["model.name_or_path=tiny-vlm-llava"],
    ),
    Case("vlm_ia3", ["task=vlm trains LoRA adapters", "peft.method=ia3"], ["recipe=tiny_vlm_llava", "peft=ia3"]),
    Case(
        "vlm_missing_image",
        ["train row 3: image 3.png not found", "relative to the data file"],
        setup=lambda tmp, out: _image_conversations(tmp, "missing"),
        after_loading=True,
    ),
    Case(
        "vlm_unreadable_image",
        ["train row 3: image 3.png cannot be read as an image", "replace or drop it"],
        setup=lambda tmp, out: _image_conversations(tmp, "unreadable"),
        after_loading=True,
    ),
    Case(
        "vlm_placeholder_image_mismatch",
        ["train row 3 has 1 image placeholder(s) and 2 image(s)", "each placeholder one image"],
        setup=lambda tmp, out: _image_conversations(tmp, "mismatch"),
        after_loading=True,
    ),
    Case(
        "all_longer_than_max_length",
        ["all 190 training examples are longer than training.max_length=8", "raise training.max_length"],
        ["training.max_length=8"],
        after_loading=True,
    ),
    Case(
        "disk_nearly_full",
        ["not enough disk space", "checkpoints of", "training.save_total_limit"],
        [
            "training.max_steps=100000000",
            "training.save_strategy=steps",
            "training.save_steps=1",
            "training.save_total_limit=null",
        ],
        after_loading=True,
    ),
    # preference training (task=dpo)
    Case(
        "preference_data_for_sft",
        ["data.format=preference", "task=sft cannot train on", "use task=dpo"],
        ["data.format=preference"],
    ),
    Case(
        "sft_data_for_dpo",
        ["task=dpo trains on preference pairs", "data.format=preference"],
        ["task=dpo", "data.format=messages"],
    ),
    Case(
        "messages_file_as_preference",
        ["needs column(s) ['chosen', 'rejected']", "the data has ['messages']"],
        ["recipe=tiny_dpo", *QUICK],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, [_chat('user', 'assistant')] * 4)}", "data.eval_size=0"],
        after_loading=True,
    ),
    Case(
        "preference_chosen_equals_rejected",
        ["data row 3", "chosen and rejected are the same answer"],
        ["recipe=tiny_dpo", *QUICK],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, _row_3_bad(PAIR, {'chosen': 'x', 'rejected': 'x'}))}"],
        after_loading=True,
    ),
    Case(
        "preference_empty_prompt",
        ["data row 3", "'prompt' is empty"],
        ["recipe=tiny_dpo", *QUICK],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, _row_3_bad(PAIR, {'prompt': ''}))}"],
        after_loading=True,
    ),
    # the other preference methods (task=reward / orpo / simpo / kto)
    Case(
        "sft_data_for_reward",
        ["task=reward trains on preference pairs", "data.format=preference"],
        ["task=reward", "data.format=messages"],
    ),
    Case(
        "sft_data_for_orpo",
        ["task=orpo trains on preference pairs", "recipe=tiny_orpo"],
        ["task=orpo", "data.format=messages"],
    ),
    Case(
        "sft_data_for_simpo",
        ["task=simpo trains on preference pairs", "recipe=tiny_simpo"],
        ["task=simpo", "data.format=messages"],
    ),
    Case(
        "pairs_for_kto",
        ["task=kto trains on single answers labelled good or bad", "data.format=unpaired"],
        ["task=kto", "data.format=preference"],
    ),
    Case(
        "unpaired_data_for_sft",
        ["data.format=unpaired holds single answers labelled", "task=sft cannot train on", "use task=kto"],
        ["data.format=unpaired"],
    ),
    Case(
        "unpaired_data_for_dpo",
        ["task=dpo trains on preference pairs", "not data.format=unpaired"],
        ["task=dpo", "data.format=unpaired"],
    ),
    Case(
        "another_tasks_key",
        ["dpo.beta is read by task=dpo only", "this run is task=sft", "drop it, or set task=dpo"],
        ["task=sft", "dpo.beta=0.2"],
    ),
    Case(
        "another_tasks_section_from_a_recipe",
        ["kto is read by task=kto only", "this run is task=dpo"],
        ["recipe=tiny_kto", "task=dpo", "data.format=preference"],
    ),
    Case("unknown_task", ["task=sfft is not a task", "did you mean 'sft'?"], ["task=sfft"]),
    Case("task_module_missing", ["task=no_such_pkg.mod: cannot import"], ["task=no_such_pkg.mod"]),
    Case(
        "kto_batch_of_one",
        ["task=kto", "per_device_train_batch_size to 2"],
        ["recipe=tiny_kto", "training.per_device_train_batch_size=1"],
    ),
    Case(
        "reward_llama_adapter",
        ["llama_adapter adapts a causal LM", "peft=lora"],
        ["recipe=tiny_reward", "peft=llama_adapter"],
    ),
    Case(
        "unpaired_label_not_bool",
        ["data row 3", "'label' is 'yes', not true or false"],
        ["recipe=tiny_kto", *QUICK],
        setup=lambda tmp, out: [f"data.source={_jsonl(tmp, _row_3_bad(UNPAIRED, {'label': 'yes'}))}"],
        after_loading=True,
    ),
    Case(
        "adapter_missing",
        ["model.adapter=/no/such/run holds no adapter", "finished run"],
        ["model.adapter=/no/such/run"],
    ),
    Case(
        "adapter_of_another_model",
        ["does not fit model.name_or_path=tiny", "size mismatch"],
        ["recipe=tiny_dpo", *QUICK],
        setup=lambda tmp, out: [f"model.adapter={_other_adapter(tmp)}"],
        after_loading=True,
    ),
    # reinforcement learning (task=grpo)
    Case(
        "prompts_data_for_sft",
        ["data.format=prompts holds prompts without answers", "task=sft cannot train on", "use task=distill / grpo"],
        ["data.format=prompts"],
    ),
    Case(
        "sft_data_for_grpo",
        ["task=grpo trains on prompts", "data.format=prompts"],
        ["task=grpo", "data.format=messages"],
    ),
    Case(
        "grpo_reward_unknown",
        ["grpo.rewards: 'exact' is not a built-in reward", "exact_match", "module:function"],
        ["recipe=tiny_grpo", "grpo.rewards=[exact]"],
    ),
    Case(
        "grpo_reward_module_missing",
        ["grpo.rewards: cannot import no_such_module for no_such_module:score", "PYTHONPATH"],
        ["recipe=tiny_grpo", "grpo.rewards=[no_such_module:score]"],
    ),
    Case(
        "grpo_reward_function_missing",
        ["grpo.rewards: module json has no function no_such"],
        ["recipe=tiny_grpo", "grpo.rewards=[exact_match,json:no_such]"],
    ),
    Case(
        "grpo_reward_weights_count",
        ["grpo.reward_weights has 2 weights for 1 reward functions"],
        ["recipe=tiny_grpo", "grpo.reward_weights=[1.0,0.5]"],
    ),
    Case(
        "grpo_reward_raises",  # json.loads called with keywords only: TypeError, on a trial call before training
        ["reward function json:loads failed: TypeError"],
        ["recipe=tiny_grpo", "grpo.rewards=[json:loads]", "data.synthetic.num_examples=80"],
        after_loading=True,
    ),
    Case(
        "grpo_vllm_on_cpu",
        ["grpo.use_vllm=true needs a CUDA GPU", "grpo.use_vllm=false"],
        ["recipe=tiny_grpo", "grpo.use_vllm=true"],
    ),
    Case(
        "grpo_batch_not_whole_groups",
        ["training.per_device_train_batch_size * gradient_accumulation_steps=6", "grpo.num_generations=4"],
        ["recipe=tiny_grpo", "training.per_device_train_batch_size=6"],
    ),
    # impossible combinations
    Case(
        "galore_with_adapter",
        ["GaLore is a full-parameter optimizer and cannot train a PEFT adapter", "peft=none"],
        ["optim=galore", "peft=lora"],
    ),
    Case("zero3_with_4bit_base", ["partitions every parameter", "zero2"], ["peft=qlora", "distributed=zero3"]),
    Case("fsdp_on_cpu", ["FSDP through Accelerate needs GPUs"], ["distributed=fsdp", "peft.modules_to_save=null"]),
    Case(
        "fsdp_with_a_fully_trained_lm_head",
        ["cannot train lm_head in full", "peft.modules_to_save=null"],
        ["distributed=fsdp"],  # the default recipe trains lm_head in full
    ),
    # text-to-image: its images, and the line between diffusion pipelines and language models
    *[
        Case(
            f"image_{change}",
            [f"pictures/0002.png {problem}"],
            setup=lambda tmp, out, change=change: _image_folder(tmp, change),
            after_loading=change == "unreadable",  # the others are refused before anything loads
        )
        for change, problem in (
            ("missing", "does not exist"),
            ("unreadable", "cannot be read"),
            ("captionless", 'has no caption ("text")'),
        )
    ],
    *[
        Case(
            f"sidecar_{change}",
            problem,
            setup=lambda tmp, out, change=change: _sidecar_folder(tmp, change),
            after_loading=change == "corrupt",
        )
        for change, problem in (
            ("captionless", ["pictures/0002.png has no caption (0002.txt", "diffusion.default_caption"]),
            ("orphan", ["caption", "pictures/0004.txt has no image"]),
            ("corrupt", ["pictures/0002.png cannot be read"]),
        )
    ],
    Case(
        "llm_for_text_to_image",
        ["model.name_or_path=tiny is a language model"],
        ["recipe=tiny_sd_lora", "model.name_or_path=tiny"],
    ),
    Case(
        "pipeline_for_sft", ["model.name_or_path=tiny-sd is a text-to-image pipeline"], ["model.name_or_path=tiny-sd"]
    ),
    Case(
        "llm_dir_for_text_to_image",
        ["is not a diffusers pipeline (no model_index.json)"],
        ["recipe=tiny_sd_lora"],
        setup=lambda tmp, out: _model_dir(tmp, "config.json"),
    ),
    Case(
        "pipeline_dir_for_sft",
        ["is a diffusers pipeline, not a language model"],
        setup=lambda tmp, out: _model_dir(tmp, "model_index.json"),
    ),
    Case(
        "all_linear_for_text_to_image",
        ["peft.target_modules=all-linear names no UNet layers", "to_out.0"],
        ["recipe=tiny_sd_lora", "peft.target_modules=all-linear"],
    ),
    Case(
        "qlora_for_text_to_image",
        ["task=text_to_image trains LoRA", "peft=lora"],
        ["recipe=tiny_sd_lora", "peft=qlora"],
    ),
    # Flux / SD3: flow matching's options, and the 4-bit transformer that needs a GPU
    Case(
        "prediction_type_for_flux",
        ["diffusion.prediction_type=v_prediction: tiny-flux is trained with flow matching", "unset"],
        ["recipe=tiny_flux_lora", "diffusion.prediction_type=v_prediction"],
    ),
    Case(
        "flux_guidance_for_schnell",
        ["tiny-flux-schnell has no guidance embedding", "unset diffusion.flux_guidance"],
        ["recipe=tiny_flux_lora", "model.name_or_path=tiny-flux-schnell"],
    ),
    Case(
        "flow_option_for_sd",
        ["diffusion.weighting_scheme is an option of flow-matching models", "tiny-sd is not one"],
        ["recipe=tiny_sd_lora", "diffusion.weighting_scheme=logit_normal"],
    ),
    Case(
        "qlora_flux_on_cpu",
        ["peft.load_in_4bit", "needs a GPU", "peft=lora"],
        ["recipe=tiny_flux_lora", "peft=qlora"],
        after_loading=True,
    ),
    # chat templates and model families
    Case(
        "template_without_assistant_spans",
        ["no {% generation %} markers, TRL has no training variant", "not prefix-preserving", "model.chat_template"],
        ["model.chat_template='{% for m in messages|reverse %}{{ m.content }}\n{% endfor %}'"],
        after_loading=True,
    ),
    Case(
        "template_marks_every_token",
        ["{% generation %} markers", "enclose every token", "model.chat_template"],
        ["model.chat_template='{% generation %}{% for m in messages %}{{ m.content }}{% endfor %}{% endgeneration %}'"],
        after_loading=True,
    ),
    Case(
        "system_turn_the_template_rejects",
        ["train row 0: the chat template rejects this conversation", "drop the system turn"],
        ["model.tiny.family=mistral", "data.system_prompt=Brief"],
        after_loading=True,
    ),
    Case(
        "target_modules_of_another_family",
        ["q_proj, v_proj not found in the model", "qkv_proj"],
        ["model.tiny.family=phi3", "peft.target_modules=[q_proj,v_proj]"],
        after_loading=True,
    ),
    Case(
        "dropout_on_fused_experts",
        ["no LoRA dropout on the fused MoE experts", "peft.lora_dropout=0"],
        ["model.tiny.family=qwen3_moe", "peft.lora_dropout=0.05"],
        after_loading=True,
    ),
    Case(
        "dora_on_fused_experts",
        ["PEFT has no DoRA for the fused MoE experts", "peft=lora", "without the experts"],
        ["model.tiny.family=mixtral", "peft=dora", "peft.lora_dropout=0"],
        after_loading=True,
    ),
]
# Covered elsewhere: Llama-Adapter on a non-Llama model and QLoRA without bitsandbytes (tests/test_peft.py),
# FSDP and DeepSpeed in one launch (tests/test_distributed.py).


def _numeric_fields(node=FtConfig, prefix=""):
    """(key, field) of every int / float option in the schema."""
    for f in dataclasses.fields(node):
        kind = f.type if dataclasses.is_dataclass(f.type) else str(f.type)
        if dataclasses.is_dataclass(f.type):
            yield from _numeric_fields(f.type, f"{prefix}{f.name}.")
        elif f.type in (int, float) or kind in ("typing.Optional[int]", "typing.Optional[float]"):
            yield f"{prefix}{f.name}", f


def _outside(f, bound: str) -> int | float:
    """A value of the field's type just outside one of its declared bounds ("ge", "gt", "le" or "lt")."""
    integral = "int" in str(f.type)
    step = 1 if integral else 0.5
    value = f.metadata[bound] + {"ge": -step, "gt": 0, "le": step, "lt": 0}[bound]
    return int(value) if integral else float(value)


def _inside(f, bound: str) -> int | float:
    """The nearest value of the field's type that the bound allows."""
    integral = "int" in str(f.type)
    step = 1 if integral else 0.5
    value = f.metadata[bound] + {"ge": 0, "gt": step, "le": 0, "lt": -step}[bound]
    return int(value) if integral else float(value)


def test_every_numeric_option_declares_its_range():
    assert [key for key, f in _numeric_fields() if not {"ge", "gt", "le", "lt"} & set(f.metadata)] == []


# Every declared bound of every numeric option: (key, field, bound).
BOUNDED = [(key, f, bound) for key, f in _numeric_fields() for bound in BOUNDS if bound in f.metadata]


def _set(cfg, key: str, value) -> None:
    *sections, name = key.split(".")
    node = cfg
    for section in sections:
        node = getattr(node, section)
    setattr(node, name, value)


@pytest.mark.parametrize("key, f, bound", [pytest.param(*row, id=f"{row[0]}-{row[2]}") for row in BOUNDED])
def test_every_declared_bound_is_checked(key, f, bound):
    """ft.rules.values on a schema object: a value just outside the bound is refused in one line naming the key,
    the bound and the value; the nearest value inside it passes. The CLI's wiring of these refusals (exit 2, one
    line, nothing written) is shown by the catalogue's range rows below, one per type and kind of bound."""
    cfg = FtConfig()
    _set(cfg, key, _inside(f, bound))
    values.check_values(cfg)
    _set(cfg, key, _outside(f, bound))
    with pytest.raises(FtError) as refused:
        values.check_values(cfg)
    message = str(refused.value)
    assert message == f"{key} must be {BOUNDS[bound][0]} {f.metadata[bound]}, got {_outside(f, bound)}"


def _first_per_kind(rows):
    """One row per (type, bound) pair: the first option of each kind."""
    kinds = {}
    for key, f, bound in rows:
        kinds.setdefault((str(f.type), bound), (key, f, bound))
    return list(kinds.values())


RANGE_CASES = [
    Case(f"range_{key}_{bound}", [f"{key} must be", f"got {_outside(f, bound)}"], [f"{key}={_outside(f, bound)}"])
    for key, f, bound in _first_per_kind(BOUNDED)
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES + RANGE_CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier file in the output dir")
    overrides = [*QUICK, f"training.output_dir={out}", f"training.run_name={RUN}", *case.overrides]
    if case.setup:
        overrides += case.setup(tmp_path, out)
    before = snapshot(out)

    if case.env is None:
        code = cli.main(["train", *overrides])
        stderr = capsys.readouterr().err
    else:
        extra = {k: v for k, v in case.env.items() if v is not None}
        result = run_ft(
            "train", *overrides, env_extra=extra, env_drop=tuple(k for k, v in case.env.items() if v is None)
        )
        code, stderr = result.returncode, result.stderr

    assert_refused(code, stderr, *case.expected, alone=not case.after_loading)
    assert snapshot(out) == before, "the output directory changed"


HEAVY = {"transformers", "bitsandbytes", "peft", "trl", "datasets"}


@pytest.mark.parametrize(
    "case_id",
    [
        "optimizer_typo",
        "zero_rank",
        "flash_attn_on_cpu",
        "hub_model_offline",
        "not_an_ft_dir",
        "galore_with_adapter",
        "grpo_reward_module_missing",
        "llm_for_text_to_image",
        "pipeline_dir_for_sft",
        "image_captionless",
        "sidecar_orphan",
    ],
)
def test_quick_refusals_come_before_the_heavy_imports(case_id, tmp_path):
    """In a fresh interpreter, where importing bitsandbytes prints to stderr on some CPUs: the refusal is
    the only line, and `python -X importtime` shows none of the heavy libraries was imported."""
    case = next(c for c in CASES if c.id == case_id)
    out = tmp_path / "runs"
    out.mkdir()
    overrides = [*QUICK, f"training.output_dir={out}", f"training.run_name={RUN}", *case.overrides]
    if case.setup:
        overrides += case.setup(tmp_path, out)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ft", "train", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert imported & HEAVY == set()
    messages = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    assert_refused(result.returncode, messages, *case.expected)
