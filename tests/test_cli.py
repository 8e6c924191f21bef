"""The command lines: every command listed, only the chosen one's module imported."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from build.__main__ import COMMAND_MODULES, parser
from build.cli import command_and_help

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys, contextlib, io
from build.__main__ import COMMAND_MODULES, main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
heavy = ("datasets", "torch", "transformers", "matplotlib", "flask", "pyarrow")
print(json.dumps({"help": out.getvalue(), "imported": [m for m in COMMAND_MODULES if m in sys.modules],
                  "heavy": [m for m in heavy if m in sys.modules]}))
"""


def probe(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_help_lists_every_command_without_importing_them():
    seen = probe("--help")
    assert seen["imported"] == [] and seen["heavy"] == []
    for name in COMMAND_MODULES:  # the listing shows each module's own COMMAND and HELP
        module = importlib.import_module(name)
        assert command_and_help(name) == (module.COMMAND, module.HELP)
        assert module.COMMAND in seen["help"]
        assert " ".join(module.HELP.split()[:3]) in " ".join(seen["help"].split())


def test_a_command_imports_its_own_module_only():
    seen = probe("-v", "standardize", "--help")
    assert seen["imported"] == ["build.standardize"]
    assert seen["help"].startswith("usage: python -m build standardize")


def test_the_chosen_command_parses_its_arguments(tmp_path):
    args = parser(["items", "--work", str(tmp_path)]).parse_args(["items", "--work", str(tmp_path)])
    assert args.command == "items" and args.work == tmp_path and args.main.__module__ == "build.items"


def test_a_command_module_without_literal_help_is_refused(tmp_path, monkeypatch):
    (tmp_path / "odd_command.py").write_text('COMMAND = "odd"\nHELP = "a" + "b"\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="string literals"):
        command_and_help("odd_command")
