"""Read the YAML in configs/: label map, build profiles, source registry."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from spinebench import CONFIGS_DIR


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    """configs/<name>.yaml as a dict (cached: configs do not change during a build)."""
    with open(CONFIGS_DIR / f"{name}.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def profile(name: str) -> dict[str, Any]:
    profiles = load("profiles")
    if name not in profiles:
        raise SystemExit(f"unknown profile {name!r}; configs/profiles.yaml has {', '.join(profiles)}")
    return {"name": name, **profiles[name]}
