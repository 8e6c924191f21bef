"""`python -m build <command>`: one entry point for every stage of the offline build."""

from __future__ import annotations

import argparse
import logging
import sys

from build.cli import command_parser
from build.errors import USAGE_EXIT, BuildError

# Each module exposes COMMAND, HELP, add_arguments(parser) and main(args) -> exit code.
COMMAND_MODULES = (
    "build.replicas",
    "build.standardize",
    "build.inventory",
    "build.ingest",
    "build.items",
    "build.export",
    "build.run",
    "build.push",
    "build.review",
)


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    top = command_parser("python -m build", __doc__, COMMAND_MODULES, argv)
    top.add_argument("-v", "--verbose", action="store_true", help="log every warning as it happens")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR,
                        format="%(levelname)s %(message)s")
    try:
        return args.main(args)
    except BuildError as error:  # a bad configuration or a folder in use: nothing was written
        print(f"error: {error}", file=sys.stderr)
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
