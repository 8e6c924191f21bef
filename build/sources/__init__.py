"""One reader per raw release, all yielding `build.records.SourceRecord`.

Every reader module exposes SOURCE and `read_release(folder, report)`; this registry is the only place that
lists them, in the order the build reads them. A reader whose facts live in the image files' DICOM headers
also registers a `header_facts(dataset)`: the ingest worker calls it on the dataset it parses for the
pixels, and the record takes the fields it returns, so no file is parsed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from build.records import SourceRecord
from build.report import StageReport
from build.sources import buu, csxa, rsna, vindr

Reader = Callable[[Path, StageReport], Iterator[SourceRecord]]
HeaderFacts = Callable[[Dataset], dict[str, Any]]  # SourceRecord fields read from a parsed DICOM

READERS: dict[str, Reader] = {module.SOURCE: module.read_release for module in (buu, csxa, rsna, vindr)}
HEADER_FACTS: dict[str, HeaderFacts] = {vindr.SOURCE: vindr.header_facts}
