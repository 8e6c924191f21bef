"""`python -m evaluation <command>`: what runs after lighteval, on its saved output."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes COMMAND, HELP, add_arguments(parser) and main(args) -> exit code, as build's do.
COMMAND_MODULES = ("evaluation.report",)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m evaluation",
        description=__doc__ + "\n\nScore a model first, e.g.\n"
        '  lighteval custom always-a evaluation/baselines.py "spinebench:mini|0" \\\n'
        "    --custom-tasks evaluation/spinebench_tasks.py --output-dir RUN_DIR --save-details\n"
        "then: python -m evaluation report RUN_DIR --out DIR",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        sub = commands.add_parser(module.COMMAND, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
