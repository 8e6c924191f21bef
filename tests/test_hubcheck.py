"""The folder check: its streaming loads stay free of torch, and a broken folder is still caught."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets

from build import hubcheck
from spinebench import BUILD_INFO

ROOT = Path(__file__).resolve().parents[1]


def test_check_never_imports_torch(built):
    probe = ("import sys, json; from pathlib import Path; from build import hubcheck; "
             f"r = hubcheck.check(Path({str(built.hub)!r})); "
             "print(json.dumps([r.ok, r.figures['rows'], 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    ok, rows, torch_imported = json.loads(done.stdout.splitlines()[-1])
    assert ok and rows["full"] == rows["diagnosis"] + rows["localization"] > 0
    assert not torch_imported


def test_check_still_counts_rows(built, tmp_path):
    folder = tmp_path / "hub"
    shutil.copytree(built.hub, folder)
    info = json.loads((folder / BUILD_INFO).read_text(encoding="utf-8"))
    info["counts"]["mini"] += 1
    (folder / BUILD_INFO).write_text(json.dumps(info), encoding="utf-8")
    saved = datasets.config.TORCH_AVAILABLE
    result = hubcheck.check(folder)
    assert datasets.config.TORCH_AVAILABLE == saved
    assert any(p.startswith("mini:") and "the build recorded" in p for p in result.problems), result.problems
