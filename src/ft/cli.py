"""`python -m ft COMMAND [key=value ...]`. Heavy libraries are imported by the commands that need
them, so `--help` and `recipes` answer in well under a second without importing torch."""

import argparse
import sys

from ft.errors import FtError, FtRemoteError

USAGE_EXAMPLES = """examples:
  python -m ft train                                    the offline tiny LoRA recipe
  python -m ft train recipe=default training.max_steps=20 peft.r=8
  python -m ft train recipe=default --cfg job           print the resolved config, run nothing
  python -m ft recipes                                  list recipes
  python -m ft generate run_dir=runs/NAME prompt="What is 2 + 3?"
  python -m ft chat run_dir=runs/NAME                   talk to the trained model (stdin, `exit` to leave)
  python -m ft eval run_dir=runs/NAME                   eval loss / perplexity / exact match vs the base
  python -m ft push run_dir=runs/NAME repo_id=you/name --dry-run
  python -m ft merge run_dir=runs/NAME [out=PATH]       fold the adapter into the base model
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other ft error
        self.exit(2, f"ft: error: {message} (see: python -m ft --help)\n")


def _train_epilog() -> str:
    import textwrap

    from ft import config
    from ft.config import reference

    groups = "\n".join(f"  {g:<12} {', '.join(config.group_options(g))}" for g in config.GROUPS)
    keys = "\n".join(
        textwrap.fill(f"{key}={default}  {f'({allowed})  ' if allowed else ''}{help_text}", width=100,
                      initial_indent="  ", subsequent_indent="      ", break_long_words=False, break_on_hyphens=False)
        for key, default, allowed, help_text in reference.reference()
    )
    return (
        f"config groups and their options (choose with GROUP=OPTION):\n{groups}\n\n"
        f"config keys (set with key=value; shown with their default, allowed values and meaning):\n{keys}\n\n"
        + USAGE_EXAMPLES
    )


def cmd_train(args) -> int:
    from ft import config

    cfg = config.compose(args.overrides)
    if args.cfg == "job":
        print(config.to_yaml(cfg), end="")
        return 0
    from ft import tasks

    tasks.run(cfg, args.overrides)
    return 0


def cmd_sbatch(args) -> int:
    from ft import config
    from ft.run import slurm

    if args.nodes < 1 or args.gpus_per_node < 1:
        raise FtError("--nodes and --gpus-per-node must be >= 1")
    cfg = config.compose(args.overrides)  # a typo fails now, not on the cluster
    script = slurm.sbatch_script(cfg, args.overrides, args.nodes, args.gpus_per_node, args.time,
                                 args.partition, args.cpus_per_task, args.port)
    if args.output is None:
        print(script, end="")
        return 0
    from pathlib import Path

    if Path(args.output).exists():
        raise FtError(f"{args.output} already exists: choose another --output or remove it")
    Path(args.output).write_text(script)
    print(f"ft: wrote {args.output}; submit it with: sbatch {args.output}")
    return 0


def cmd_recipes(args) -> int:
    from ft import config

    descriptions = config.recipe_descriptions()
    width = max(map(len, descriptions), default=0)
    for name, description in descriptions.items():
        print(f"{name:<{width}}  {description}")
    return 0


def parse_pairs(pairs: list[str], spec: dict, command: str, required: tuple = ()) -> dict:
    """key=value arguments of a finishing command, typed by `spec` (key -> type)."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise FtError(f"{command}: expected key=value, got '{pair}'; valid keys: {', '.join(spec)}")
        if key not in spec:
            raise FtError(f"{command}: unknown key '{key}'; valid keys: {', '.join(spec)}")
        kind = spec[key]
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                values[key] = raw.lower() in ("true", "1", "yes")
            else:
                values[key] = kind(raw)
        except ValueError:
            raise FtError(f"{command}: {key}={raw} is not a valid {kind.__name__}") from None
    missing = [key for key in required if key not in values]
    if missing:
        raise FtError(f"{command}: {missing[0]}=... is required (valid keys: {', '.join(spec)})")
    return values


GENERATION_KEYS = {"run_dir": str, "max_new_tokens": int, "temperature": float, "top_p": float, "do_sample": bool,
                   "show_prompt": bool}


def cmd_generate(args) -> int:
    from ft.finish import generate

    spec = {**GENERATION_KEYS, "prompt": str} if args.command == "generate" else GENERATION_KEYS
    values = parse_pairs(args.pairs, spec, args.command, required=("run_dir", "prompt") if args.command == "generate" else ("run_dir",))
    run_dir, prompt = values.pop("run_dir"), values.pop("prompt", None)
    options = generate.Options(**values)
    if args.command == "generate":
        if not prompt.strip():
            raise FtError('generate: prompt is empty: pass prompt="..."')
        generate.generate(run_dir, prompt, options)
        print(flush=True)
    else:
        generate.chat(run_dir, options)
    return 0


def cmd_eval(args) -> int:
    from ft.finish import evaluate

    values = parse_pairs(args.pairs, {"run_dir": str, "max_examples": int, "batch_size": int,
                                      "exact_match_examples": int, "max_new_tokens": int, "base": bool},
                         "eval", required=("run_dir",))
    evaluate.evaluate(values.pop("run_dir"), **values)
    return 0


def cmd_push(args) -> int:
    from ft.finish import hub, loading

    values = parse_pairs(args.pairs, {"run_dir": str, "repo_id": str, "private": bool, "revision": str},
                         "push", required=("run_dir",))
    run_dir = loading.check_run_dir(values["run_dir"])
    repo_id = values.get("repo_id") or loading.load_config(run_dir).hub.repo_id
    if not repo_id:
        raise FtError("push: repo_id=owner/name is required (or hub.repo_id in the run's config)")
    files = hub.push(run_dir, repo_id, private=values.get("private", False), revision=values.get("revision"),
                     dry_run=args.dry_run)
    if args.dry_run:
        left_out = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if p.name not in files)
        print(f"ft: would upload {len(files)} files from {run_dir} to {repo_id}:")
        for name in files:
            print(f"  {name}  ({(run_dir / name).stat().st_size:,} bytes)")
        print(f"ft: left out: {', '.join(left_out) or 'nothing'}")
    else:
        revision = values.get("revision") or "main"
        print(f"ft: pushed {len(files)} files from {run_dir} to {repo_id} ({revision}): {', '.join(files)}")


def cmd_merge(args) -> int:
    from ft.finish.merge import merge

    values = parse_pairs(args.pairs, {"run_dir": str, "out": str}, "merge", required=("run_dir",))
    out = merge(values["run_dir"], values.get("out"))
    print(f"ft: merged model saved to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ft",
        description="ft: LoRA/QLoRA fine-tuning of causal LMs with transformers, TRL, PEFT and Accelerate.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="fine-tune a model from a recipe and key=value overrides",
        description="Compose a recipe from the config groups and overrides, then train with TRL's SFTTrainer.",
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("overrides", nargs="*", metavar="key=value", help="recipe=NAME, GROUP=OPTION or a.b.c=VALUE")
    train.add_argument("--cfg", choices=["job"], help="print the resolved config and exit")
    train.set_defaults(run=cmd_train)
    sbatch = commands.add_parser(
        "sbatch",
        help="write a SLURM batch script that trains a recipe on N nodes x G GPUs",
        description="Print (or write with --output) an sbatch script running `ft train` on every node.",
    )
    sbatch.add_argument("overrides", nargs="*", metavar="key=value", help="recipe=NAME and train overrides")
    sbatch.add_argument("--nodes", type=int, required=True)
    sbatch.add_argument("--gpus-per-node", type=int, required=True)
    sbatch.add_argument("--time", default="24:00:00", help="SLURM time limit (default 24:00:00)")
    sbatch.add_argument("--partition", default=None)
    sbatch.add_argument("--cpus-per-task", type=int, default=16)
    sbatch.add_argument("--port", type=int, default=29500, help="rendezvous port on the first node")
    sbatch.add_argument("--output", default=None, help="write the script here instead of stdout")
    sbatch.set_defaults(run=cmd_sbatch)
    recipes = commands.add_parser("recipes", help="list the recipes with a one-line description each")
    recipes.set_defaults(run=cmd_recipes)
    merge = commands.add_parser(
        "merge",
        help="fold a run's adapter into its base model and save a standalone model",
        description="Merge the adapter of run_dir into its base (a QLoRA base is dequantized first) and save it "
        "with the tokenizer to out (default: <run_dir>/merged). Llama-Adapter runs cannot be merged.",
    )
    merge.add_argument("pairs", nargs="*", metavar="key=value", help="run_dir=PATH (required), out=PATH")
    merge.set_defaults(run=cmd_merge)

    for name, help_text, usage in (
        ("generate", "generate from a trained run (streamed)",
         'run_dir=DIR prompt="..." [max_new_tokens=128] [temperature=T] [top_p=P] [do_sample=true] [show_prompt=true]'),
        ("chat", "chat with a trained run: one user turn per stdin line, `exit` or EOF to leave, `/reset` to start over",
         "run_dir=DIR [max_new_tokens=128] [temperature=T] [top_p=P] [do_sample=true] [show_prompt=true]"),
    ):
        command = commands.add_parser(name, help=help_text, description=f"{help_text}. Arguments: {usage}. "
                                      "Loads base + adapter (or a merged / full model dir) with device_map=auto and "
                                      "prompts through the chat template saved with the run.")
        command.add_argument("pairs", nargs="*", metavar="key=value")
        command.set_defaults(run=cmd_generate)
    evaluation = commands.add_parser(
        "eval", help="eval loss, perplexity and exact match of a run vs its untrained base",
        description="Arguments: run_dir=DIR [max_examples=N] [batch_size=N] [exact_match_examples=64] "
                    "[max_new_tokens=32] [base=true]. Rebuilds the recipe's eval split from the run's config.yaml.")
    evaluation.add_argument("pairs", nargs="*", metavar="key=value")
    evaluation.set_defaults(run=cmd_eval)
    push = commands.add_parser(
        "push", help="upload a run (adapter, tokenizer, model card, loss plot, config) to the Hugging Face Hub",
        description="Arguments: run_dir=DIR repo_id=owner/name [private=true] [revision=BRANCH]. Uploads an "
                    "allow-list only; the token comes from `hf auth login` or HF_TOKEN.")
    push.add_argument("pairs", nargs="*", metavar="key=value")
    push.add_argument("--dry-run", action="store_true", help="list exactly what would be uploaded, upload nothing")
    push.set_defaults(run=cmd_push)
    return parser


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
        print(f"ft: error: {e}", file=sys.stderr)
        return 2
    except FtRemoteError as e:
        print(f"ft: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ft: interrupted", file=sys.stderr)
        return 130
