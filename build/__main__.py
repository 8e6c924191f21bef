"""`python -m build <command>`: one entry point for every stage of the offline build."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each module exposes COMMAND, HELP, add_arguments(parser) and main(args) -> exit code.
COMMAND_MODULES = (
    "build.replicas",
    "build.standardize",
    "build.ingest",
    "build.items",
    "build.export",
    "build.run",
    "build.push",
    "build.review",
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m build", description=__doc__)
    top.add_argument("-v", "--verbose", action="store_true", help="log every warning as it happens")
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
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR,
                        format="%(levelname)s %(message)s")
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
