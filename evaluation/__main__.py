"""`python -m evaluation <command>`: what runs after lighteval, on its saved output."""

from __future__ import annotations

import argparse
import sys

from build.cli import command_parser

# Each module exposes COMMAND, HELP, add_arguments(parser) and main(args) -> exit code, as build's do.
COMMAND_MODULES = ("evaluation.report",)


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    description = (__doc__ + "\n\nScore a model first, e.g.\n"
                   '  lighteval custom always-a evaluation/baselines.py "spinebench:mini|0" \\\n'
                   "    --custom-tasks evaluation/spinebench_tasks.py --output-dir RUN_DIR --save-details\n"
                   "then: python -m evaluation report RUN_DIR --out DIR")
    return command_parser("python -m evaluation", description, COMMAND_MODULES, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv).parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
