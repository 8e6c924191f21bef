"""One reader per raw release, all yielding `build.records.SourceRecord`.

Every reader module exposes SOURCE and `read_release(folder, report)`; this registry is the only place that
lists them, in the order the build reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from build.records import SourceRecord
from build.report import StageReport
from build.sources import buu, csxa, rsna, vindr

Reader = Callable[[Path, StageReport], Iterator[SourceRecord]]

READERS: dict[str, Reader] = {module.SOURCE: module.read_release for module in (buu, csxa, rsna, vindr)}
