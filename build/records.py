"""The one record type every source reader yields.

Readers know release formats, not the benchmark: a record says what the release says about one image
(raw label strings, levels, grades) and where its pixels are. The label map turns raw labels into
SpineBench diseases later; no later stage looks at source-specific columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from spinebench import LEVELS


@dataclass(frozen=True, order=True)
class Finding:
    """One raw annotation on an image: a label string exactly as in the release, with its level and grade."""

    label: str
    level: str | None = None  # one of spinebench.LEVELS, or None when the release gives no level
    severity: str | None = None  # RSNA grade (`Normal/Mild`, `Moderate`, `Severe`) or None


@dataclass(frozen=True)
class Point:
    """An annotation coordinate as the release gives it (x is the column, y the row), with the table row that
    gives it: ingest checks it against the image's stored size once a worker has read the pixels, so no
    reader opens an image file."""

    file: str  # the annotation table, relative to the release root
    row: int  # its 1-based line
    x: float
    y: float


@dataclass(frozen=True)
class SourceRecord:
    """One image of a release and everything the release says about it."""

    source: str  # buu | csxa | rsna | vindr
    image_key: str  # release-unique image id, e.g. "4003253/702807833/8"; slashes allowed
    patient_id: str  # the release's own anonymised patient or study id
    modality: str  # X-ray | MRI
    region: str  # cervical | lumbar | thoracic | whole | unknown
    view: str  # AP | lateral | Sagittal T1 | Sagittal T2/STIR | Axial T2 | unknown
    path: str  # pixels, relative to the source folder handed to the reader (posix separators)
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    frame: int = 0  # frame inside a multi-frame file
    sex: str | None = None  # F | M | None
    age: int | None = None  # years
    points: tuple[Point, ...] = ()  # annotation coordinates to check against the stored image size

    @cached_property  # asked for at every stage of ingest; a frozen dataclass still has a __dict__
    def image_id(self) -> str:
        """Stable benchmark-wide image id: source prefix plus the release id, filesystem- and URL-safe."""
        return f"{self.source}-{slug(self.image_key)}"


def slug(text: str) -> str:
    """Lowercase id fragment with only [a-z0-9-]; distinct release ids stay distinct in practice."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def level_name(cranial: str, caudal: str) -> str:
    """Canonical level between two vertebrae, e.g. ("L4", "L5") -> "L4/L5"; refuses unknown levels."""
    level = f"{cranial.upper()}/{caudal.upper()}"
    if level not in LEVELS:
        raise ValueError(f"unknown spinal level {level!r}")
    return level
