"""One reader per raw release, all yielding `build.records.SourceRecord`.

Every reader module exposes SOURCE, `read(release, report)` and `read_release(folder, report)` (find, then
read); FINDERS locate each release by its signature inside RAW/<source> (`release.locate`), READERS read
it. This registry is the only place that lists them, in the order the build reads them. A reader whose
facts live in the image files' DICOM headers also registers a `header_facts(dataset)`: the ingest worker
calls it on the dataset it parses for the pixels, and the record takes the fields it returns, so no file
is parsed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from build.records import SourceRecord
from build.report import StageReport
from build.sources import buu, csxa, rsna, vindr
from build.sources.release import Release, SourceError, locate

Reader = Callable[[Release, StageReport], Iterator[SourceRecord]]
Finder = Callable[[Path, StageReport | None], Release]  # SourceError when absent, doubled or misconfigured
HeaderFacts = Callable[[Dataset], dict[str, Any]]  # SourceRecord fields read from a parsed DICOM

READERS: dict[str, Reader] = {module.SOURCE: module.read for module in (buu, csxa, rsna, vindr)}
HEADER_FACTS: dict[str, HeaderFacts] = {vindr.SOURCE: vindr.header_facts}
# What each release holds (docs/sources.md): a build far below it is a partial download or a wrong layout.
EXPECTED: dict[str, tuple[int, str]] = {
    "buu": (800, "images"), "csxa": (4963, "images"), "rsna": (1975, "studies"), "vindr": (10466, "images"),
}


def find(source: str, folder: Path, report: StageReport | None = None) -> Release:
    """The release of `source` inside `folder` (RAW/<source>); SourceError says what is wrong."""
    if source == csxa.SOURCE:
        return csxa.find(folder, report)
    module = {m.SOURCE: m for m in (buu, rsna, vindr)}[source]
    return locate(folder, source, module.signature, module.DESCRIBE, report)


__all__ = ["EXPECTED", "HEADER_FACTS", "READERS", "Release", "SourceError", "find"]
