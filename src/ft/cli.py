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
    from ft.train import train

    train(cfg, command=["python", "-m", "ft", "train", *args.overrides])
    return 0


def cmd_recipes(args) -> int:
    from ft import config

    descriptions = config.recipe_descriptions()
    width = max(map(len, descriptions), default=0)
    for name, description in descriptions.items():
        print(f"{name:<{width}}  {description}")
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
    recipes = commands.add_parser("recipes", help="list the recipes with a one-line description each")
    recipes.set_defaults(run=cmd_recipes)
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
