"""SHA256SUMS of a build's outputs: the proof that a build is deterministic, and a way to verify a copy.

Timing files (`*.time.json`) are left out on purpose: they are the only outputs allowed to differ.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from build import artifacts

NAME = "SHA256SUMS"


def output_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*")
                  if p.is_file() and p.name != NAME and not p.name.endswith(".time.json")
                  and not any(part.startswith(".") for part in p.relative_to(out).parts))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_lines(out: Path) -> list[str]:
    """One `sha256  path` line per output file of OUT/work and OUT/spinebench (never the raw input)."""
    return [f"{file_sha256(p)}  {p.relative_to(out).as_posix()}\n" for p in output_files(out)
            if p.relative_to(out).parts[0] in ("work", "spinebench")]


def write_checksums(out: Path) -> Path:
    path = out / NAME
    with artifacts.atomic_path(path) as tmp:
        tmp.write_text("".join(checksum_lines(out)), encoding="utf-8")
    return path
