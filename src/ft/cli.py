"""`python -m ft COMMAND [key=value ...]`. Heavy libraries are imported by the commands that need
them, so `--help` and `recipes` answer in well under a second without importing torch."""

import argparse
import sys
import textwrap

from ft.errors import FtCheckFailed, FtError, FtRemoteError

USAGE_EXAMPLES = """examples:
  python -m ft train                                    the offline tiny LoRA recipe
  python -m ft train recipe=default training.max_steps=20 peft.r=8
  python -m ft train recipe=default --cfg job           print the resolved config, run nothing
  python -m ft train my_recipe.yaml peft.r=8            a recipe file of your own (README: Your own recipes)
  python -m ft train -m training.learning_rate=1e-4,3e-4 peft.r=8,16   a sweep: one run per combination
  python -m ft recipes                                  list recipes
  python -m ft data preview model.tiny.family=qwen3 n=2  what training sees: trained tokens marked
  python -m ft init my.yaml recipe=tiny_dpo             write a commented recipe file to edit
  python -m ft estimate recipe=qlora_mistral gpu_memory_gb=24   memory per device, and whether it fits a 24 GB card
  python -m ft sbatch nodes=2 gpus_per_node=8 recipe=NAME   a SLURM script for 2 nodes x 8 GPUs
  python -m ft generate run_dir=runs/NAME prompt="What is 2 + 3?"
  python -m ft chat run_dir=runs/NAME                   talk to the trained model (stdin, `exit` to leave)
  python -m ft eval run_dir=runs/NAME                   eval loss / perplexity / exact match vs the base
  python -m ft push run_dir=runs/NAME repo_id=you/name --dry-run
  python -m ft merge run_dir=runs/NAME [out=PATH]       fold the adapter into the base model
  python -m ft export run_dir=runs/NAME quant=q4_k_m    a GGUF for llama.cpp/Ollama, checked against transformers
  python -m ft studio                                   the web UI on http://127.0.0.1:7860: compose, launch, watch
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other ft error
        self.exit(2, f"ft: error: {message} (see: python -m ft --help)\n")


def cmd_train(args) -> int:
    from ft import config

    if args.multirun:
        from ft.commands import sweep

        return sweep.run(args.overrides, show_config=args.cfg == "job")
    cfg = config.compose(args.overrides)
    if args.cfg == "job":
        print(config.to_yaml(cfg), end="")
        return 0
    from ft.training import launch

    launch.run(cfg, args.overrides)
    return 0


def cmd_preprocess(args) -> int:
    from ft import config
    from ft.commands.preprocess import preprocess

    preprocess(config.compose(args.overrides))
    return 0


def cmd_sbatch(args) -> int:
    from ft import config
    from ft.commands import slurm
    from ft.options import split_pairs

    options, overrides = split_pairs(slurm.SbatchOptions, args.pairs, "sbatch")
    cfg = config.compose(overrides)  # a typo fails now, not on the cluster
    script = slurm.sbatch_script(cfg, overrides, options)
    if options.output is None:
        print(script, end="")
        return 0
    from pathlib import Path

    if Path(options.output).exists():
        raise FtError(f"{options.output} already exists: choose another output=PATH or remove it")
    Path(options.output).write_text(script)
    print(f"ft: wrote {options.output}; submit it with: sbatch {options.output}")
    return 0


def cmd_estimate(args) -> int:
    from ft import config
    from ft.commands import estimate
    from ft.options import split_pairs

    options, overrides = split_pairs(estimate.EstimateOptions, args.pairs, "estimate")
    print(estimate.estimate(config.compose(overrides), options))
    return 0


def cmd_init(args) -> int:
    from ft.commands import init as init_recipe
    from ft.options import parse_pairs

    paths = [argument for argument in args.pairs if "=" not in argument]
    options = parse_pairs(init_recipe.InitOptions, [a for a in args.pairs if "=" in a], "init")
    if len(paths) > 1:
        raise FtError(f"init: one PATH at most, got {' '.join(paths)}")
    path = paths[0] if paths else "recipe.yaml"
    written = init_recipe.write(path, options.recipe)
    print(f"ft: wrote {written}: edit it, then train it with: python -m ft train {path}")
    return 0


def cmd_recipes(args) -> int:
    from ft import config

    descriptions = config.recipe_descriptions()
    width = max(map(len, descriptions), default=0)
    print("\n".join(f"{name:<{width}}  {description}" for name, description in descriptions.items()))
    return 0


def cmd_data(args) -> int:
    from ft.commands import preview

    preview.preview(args.pairs)
    return 0


def _options(args):
    """The command's options dataclass, filled from its key=value arguments."""
    from ft.options import parse_pairs

    return parse_pairs(args.options, args.pairs, args.command)


def _is_vision_run(options) -> bool:
    """Whether options.run_dir is a vision-language run: task=vlm's own generate / chat / merge serve it."""
    from ft.tasks.vision_language import generate as generate_vision

    return generate_vision.is_vision_run(options.run_dir)


def cmd_generate(args) -> int:
    from ft.finish import generate
    from ft.tasks.text_to_image import generate as generate_image
    from ft.tasks.vision_language import generate as generate_vision

    options = _options(args)
    if generate_image.is_image_run(options.run_dir):  # a text-to-image run renders its prompt
        generate_image.generate(options.run_dir, options.prompt, options.image)
    elif _is_vision_run(options):  # a vision-language run answers about image=
        generate_vision.generate(options)
    else:
        generate.generate(options)
    print(flush=True)
    return 0


def cmd_chat(args) -> int:
    from ft.finish import generate
    from ft.tasks.vision_language import generate as generate_vision

    options = _options(args)
    (generate_vision.chat if _is_vision_run(options) else generate.chat)(options)
    return 0


def cmd_eval(args) -> int:
    from ft.finish import evaluate

    evaluate.evaluate(_options(args))
    return 0


def cmd_push(args) -> int:
    from ft.finish import hub

    hub.push_command(_options(args), dry_run=args.dry_run)
    return 0


def cmd_merge(args) -> int:
    from ft.finish.merge import merge
    from ft.tasks.vision_language import finishing as vision_finishing

    options = _options(args)
    out = (vision_finishing.merge if _is_vision_run(options) else merge)(options)
    print(f"ft: merged model saved to {out}")
    return 0


def cmd_export(args) -> int:
    from ft.finish.export.command import export

    print(f"ft: exported to {export(_options(args))}")
    return 0


def _add_key_value_command(
    commands, name: str, options, run, help: str, description: str, before: str = "", after: str = "", action=None
):
    """A command taking key=value arguments: its usage line and per-key help come from the `options`
    dataclass, which also parses them (see `_options`). `before` / `after`: the usage of what it takes
    beside its own keys (--flags, a PATH, a recipe's overrides); `action`: the choices of a first word."""
    from ft.options import describe, usage

    command = commands.add_parser(
        name,
        help=help,
        usage="%(prog)s [-h] " + f"{before}{usage(options)}{after}".replace("%", "%%"),
        description=textwrap.fill(description, 100) + "\n\n" + describe(options),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if action:
        command.add_argument("action", choices=action, help=argparse.SUPPRESS)
    command.add_argument("pairs", nargs="*", help=argparse.SUPPRESS)
    command.set_defaults(run=run, options=options)
    return command


def _task_list() -> str:
    """`task=NAME` choices for `ft train --help`, from the registry (a task of your own: task=my_pkg.my_module)."""
    from ft.config import registry

    tasks = registry.tasks()
    width = max(map(len, tasks))
    lines = [f"  {name:<{width}}  {task.summary}" for name, task in tasks.items()]
    return "tasks (task=NAME, or task=my_pkg.my_module for a task of your own):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ft",
        description="ft: LoRA/QLoRA fine-tuning of causal LMs with transformers, TRL, PEFT and Accelerate.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from ft.config import reference

    train = commands.add_parser(
        "train",
        help="fine-tune a model from a recipe and key=value overrides",
        description="Compose a recipe from the config groups and overrides, then train with the task's trainer.\n\n"
        + _task_list(),
        epilog=reference.train_epilog(USAGE_EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "overrides", nargs="*", metavar="key=value", help="recipe=NAME or a FILE.yaml, GROUP=OPTION or a.b.c=VALUE"
    )
    train.add_argument("--cfg", choices=["job"], help="print the resolved config and exit")
    train.add_argument("-m", "--multirun", action="store_true", help="sweep: a run per combination of a=1,2 values")
    train.set_defaults(run=cmd_train)
    preprocess = commands.add_parser(
        "preprocess", help="tokenize a recipe's datasets into the cache ahead of training (task=sft)"
    )
    preprocess.add_argument("overrides", nargs="*", metavar="key=value", help="recipe=NAME and train overrides")
    preprocess.set_defaults(run=cmd_preprocess)
    from ft.commands.estimate import EstimateOptions
    from ft.commands.init import InitOptions
    from ft.commands.preview import PreviewOptions
    from ft.commands.slurm import SbatchOptions
    from ft.finish.evaluate import EvalOptions
    from ft.finish.export.command import ExportOptions
    from ft.finish.generate import ChatOptions, GenerateOptions
    from ft.finish.hub import PushOptions
    from ft.finish.merge import MergeOptions
    from ft.studio import server as studio

    recipe_overrides = " [recipe=NAME | FILE.yaml] [key=value ...]"
    _add_key_value_command(
        commands,
        "sbatch",
        SbatchOptions,
        cmd_sbatch,
        after=recipe_overrides,
        help="write a SLURM batch script that trains a recipe on N nodes x G GPUs",
        description="Print (or write to output=PATH) an sbatch script running `ft train` on every node, with the "
        "recipe and overrides given beside the keys below.",
    )
    _add_key_value_command(
        commands,
        "estimate",
        EstimateOptions,
        cmd_estimate,
        after=recipe_overrides,
        help="the memory a recipe is expected to take per device, from the model's config (no weights loaded)",
        description="Estimate the memory per device of training a recipe: weights, gradients, optimizer state and "
        "activations, and the runtime's own share, from the model's config and the recipe's method, precision, "
        "batch and distributed strategy (docs/memory.md has the formulas). No weights are loaded.",
    )
    _add_key_value_command(
        commands,
        "data",
        PreviewOptions,
        cmd_data,
        action=["preview"],
        before="preview [FILE] ",
        after=recipe_overrides,
        help="preview: n examples rendered as training sees them, trained tokens marked, %% trained each",
        description="Show the first n training examples of a recipe (or of FILE, as data.source) rendered through "
        "the chat template training uses, the tokens that carry the loss marked.",
    )
    _add_key_value_command(
        commands,
        "init",
        InitOptions,
        cmd_init,
        before="[PATH] ",
        help="write a commented recipe file to edit (never over an existing file)",
        description="Write a recipe file (PATH, default recipe.yaml) that extends a shipped recipe and spells out "
        "its keys, each under a comment with its help and allowed values.",
    )
    recipes = commands.add_parser("recipes", help="list the recipes with a one-line description each")
    recipes.set_defaults(run=cmd_recipes)
    _add_key_value_command(
        commands,
        "merge",
        MergeOptions,
        cmd_merge,
        help="fold a run's adapter into its base model and save a standalone model",
        description="Merge the adapter of run_dir into its base (a QLoRA base is dequantized first) and save it "
        "with the tokenizer to out (a vision-language run: with its processor, for AutoModelForImageTextToText). "
        "Llama-Adapter runs cannot be merged.",
    )
    _add_key_value_command(
        commands,
        "export",
        ExportOptions,
        cmd_export,
        help="export a run for llama.cpp/Ollama (GGUF), vLLM/SGLang (merged) or, an image LoRA, A1111/ComfyUI (kohya)",
        description="Export run_dir: format=gguf merges the adapter and converts the model with llama.cpp's own "
        "converter and quantizer, then loads it in llama.cpp and compares tokens, logits and greedy text with the "
        "merged transformers model (parity.json; exit 1 when they differ). format=gguf-adapter writes the LoRA "
        "as a GGUF LoRA; format=merged a transformers directory (GGUF: needs `make install-export`), format=kohya "
        "a text-to-image run's LoRA in kohya's format.",
    )
    loads = (
        "Loads base + adapter (or a merged / full model dir) with device_map=auto and prompts through the "
        "chat template saved with the run."
    )
    _add_key_value_command(
        commands,
        "generate",
        GenerateOptions,
        cmd_generate,
        help="generate from a trained run (streamed)",
        description=f"Generate from a trained run, streamed. {loads}",
    )
    turns = (
        "one user turn per stdin line, `exit` or EOF to leave, `/reset` to start over, `/image PATH` to show a "
        "vision-language run an image"
    )
    _add_key_value_command(
        commands,
        "chat",
        ChatOptions,
        cmd_chat,
        help=f"chat with a trained run: {turns}",
        description=f"Chat with a trained run: {turns}. {loads}",
    )
    _add_key_value_command(
        commands,
        "eval",
        EvalOptions,
        cmd_eval,
        help="eval loss, perplexity and exact match of a run vs its untrained base",
        description="Eval loss, perplexity and exact match of a run vs its untrained base, on the recipe's eval "
        "split rebuilt from the run's config.yaml (a vision-language run: exact match on its held-out image "
        "questions).",
    )
    push = _add_key_value_command(
        commands,
        "push",
        PushOptions,
        cmd_push,
        before="[--dry-run] ",
        help="upload a run (adapter, tokenizer, model card, loss plot, config) to the Hugging Face Hub",
        description="Upload a run to the Hugging Face Hub: an allow-list of files only (adapter, tokenizer, model "
        "card, loss plot, config). The token comes from `hf auth login` or HF_TOKEN.",
    )
    push.add_argument("--dry-run", action="store_true", help="list exactly what would be uploaded, upload nothing")
    return studio.add_command(parser, commands, _add_key_value_command)  # `ft studio`, the web UI


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except FtError as e:
        message, code = f"ft: error: {e}", 2
    except (FtRemoteError, FtCheckFailed) as e:
        message, code = f"ft: error: {e}", 1
    except KeyboardInterrupt:
        message, code = "ft: interrupted", 130
    # The failed work is released now, not at exit: a progress bar it held prints its last state when
    # closed, and the error must be the last line.
    import gc

    gc.collect()
    print(message, file=sys.stderr)
    return code
