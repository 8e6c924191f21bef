"""The shape every command line of the project shares: one subcommand per module.

A command module exposes COMMAND, HELP, add_arguments(parser) and main(args) -> exit code; `python -m build`
and `python -m evaluation` list theirs and get `--help` for each from the module's docstring.

Only the module of the command being run is imported: the others' COMMAND and HELP are read from their
source text, so `--help` or a light command does not pay for every command's libraries (datasets, torch,
flask, matplotlib: seconds of imports).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def command_and_help(module: str) -> tuple[str, str]:
    """A command module's COMMAND and HELP string literals, found without running the module."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no command module {module}")
    constants = {}
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            constants.update((target.id, node.value.value) for target in node.targets
                             if isinstance(target, ast.Name) and target.id in ("COMMAND", "HELP"))
    if not all(isinstance(constants.get(key), str) for key in ("COMMAND", "HELP")):
        raise ValueError(f"{spec.origin}: COMMAND and HELP must be string literals at module level")
    return constants["COMMAND"], constants["HELP"]


def command_parser(prog: str, description: str, modules: Sequence[str],
                   argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: every command listed, only the one `argv` names (its first word) set up in full.

    Top-level options take no values, so the first word not starting with '-' is the command. With
    `argv=None` every command is set up (imports them all), for callers that parse something else.
    """
    top = argparse.ArgumentParser(prog=prog, description=description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else next((word for word in argv if not word.startswith("-")), "")
    for name in modules:
        command, help_text = command_and_help(name)
        if chosen is not None and command != chosen:
            commands.add_parser(command, help=help_text)  # listed only; nothing of the module runs
            continue
        module = importlib.import_module(name)
        sub = commands.add_parser(command, help=help_text, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return top
