"""Shared fixtures: one small end-to-end build on the synthetic replicas, made once per test session.

Tests that need a real work folder or Hub folder use `built` instead of building their own; tests that change
files copy what they need first (the session build is shared and must stay untouched).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SCALE = 0.5  # ~200 images: every source, disease and planted edge case, built in seconds


@dataclass(frozen=True)
class Built:
    raw: Path  # replica release trees + manifest.json
    work: Path  # ingest + items artifacts (profile paper)
    hub: Path  # the exported Hub folder
    manifest: dict


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    from build import config, export, ingest, items
    from build.replicas import generate

    root = tmp_path_factory.mktemp("built")
    raw, work = root / "raw", root / "out" / "work"
    manifest = generate(raw, scale=SCALE, seed=0)
    profile = config.profile("paper")
    ingest.ingest(raw, work, profile, workers=2)
    items.make_items(work, profile, "fallback", 32, "cpu", None)
    hub = export.export(work, root / "out")
    return Built(raw, work, hub, manifest)
