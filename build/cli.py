"""The shape every command line of the project shares: one subcommand per module.

A command module exposes COMMAND, HELP, add_arguments(parser) and main(args) -> exit code; `python -m build`
and `python -m evaluation` list theirs and get `--help` for each from the module's docstring.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence


def command_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        module = importlib.import_module(name)
        sub = commands.add_parser(module.COMMAND, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return top
