"""`python -m ft COMMAND [key=value ...]`. Heavy libraries are imported by the commands that need
them, so `--help` and `recipes` answer in well under a second without importing torch."""

import argparse
import sys

from ft.errors import FtError

USAGE_EXAMPLES = """examples:
  python -m ft train                                    the offline tiny LoRA recipe
  python -m ft train recipe=default training.max_steps=20 peft.r=8
  python -m ft train recipe=default --cfg job           print the resolved config, run nothing
  python -m ft recipes                                  list recipes
  python -m ft merge run_dir=runs/NAME [out=PATH]       fold the adapter into the base model
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other ft error
        self.exit(2, f"ft: error: {message} (see: python -m ft --help)\n")


def _train_epilog() -> str:
    from ft import config

    groups = "\n".join(f"  {g:<12} {', '.join(config.group_options(g))}" for g in config.GROUPS)
    return (
        f"config groups and their options (choose with GROUP=OPTION):\n{groups}\n\n"
        "any key of the resolved config can be overridden with key=value (see --cfg job).\n\n" + USAGE_EXAMPLES
    )


def cmd_train(args) -> int:
    from ft import config

    cfg = config.compose(args.overrides)
    if args.cfg == "job":
        print(config.to_yaml(cfg), end="")
        return 0
    from ft import distributed

    if cfg.distributed.strategy != "single" and not distributed.is_launched():
        from ft import hardware, outputs

        gpus = hardware.detect().num_gpus
        distributed.validate(cfg, gpus)
        run_dir = outputs.run_dir_for(cfg)
        if cfg.distributed.machine_rank == 0:  # the other nodes join the run dir it starts
            outputs.check_run_dir_free(run_dir)
        code = distributed.relaunch(cfg, run_dir, args.overrides, gpus)
        if code != 0:
            raise FtError(f"the training processes failed (exit code {code}); their errors are above")
        return 0
    from ft.train import train

    train(cfg)
    return 0


def cmd_sbatch(args) -> int:
    from ft import config, slurm

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


def cmd_merge(args) -> int:
    allowed = {"run_dir", "out"}
    values = {}
    for item in args.arguments:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed or not value:
            raise FtError(f"merge takes run_dir=PATH [out=PATH], got '{item}'")
        values[key] = value
    if "run_dir" not in values:
        raise FtError("merge needs run_dir=PATH: the run directory `ft train` printed")
    from ft.merge import merge

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
    merge.add_argument("arguments", nargs="*", metavar="key=value", help="run_dir=PATH (required), out=PATH")
    merge.set_defaults(run=cmd_merge)
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
    except KeyboardInterrupt:
        print("ft: interrupted", file=sys.stderr)
        return 130
