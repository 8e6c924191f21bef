"""Stage reports: counts in and out, every rejected file or row with its reason, warnings, time.

Bad input never crashes a build and never disappears silently: readers and stages call `reject` or
`warn` and carry on; the stage writes the report as JSON and prints a one-line summary.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from build import artifacts

log = logging.getLogger("spinebench.build")


def printable(text: str) -> str:
    """`text` with control, format and line-separator characters escaped (\\n, \\x1b, \\u202e): a raw file
    name holding a newline or a terminal escape can then neither forge a log line nor repaint the screen."""
    return "".join(
        char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
        else char for char in text)


@dataclass
class Issue:
    source: str
    path: str  # the file, relative to the raw folder where possible
    reason: str
    row: int | None = None  # 1-based line or row number inside the file, when the issue is one row

    def line(self) -> str:
        where = f"{self.path}:{self.row}" if self.row is not None else self.path
        return printable(f"[{self.source}] {where}: {self.reason}")


@dataclass
class StageReport:
    stage: str
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, Counter] = field(default_factory=dict)
    rejected: list[Issue] = field(default_factory=list)  # bad input: unreadable, inconsistent, missing
    dropped: list[Issue] = field(default_factory=list)  # good input left out on purpose (label policy)
    warnings: list[Issue] = field(default_factory=list)
    seconds: float | None = None

    def count(self, table: str, key: str, n: int = 1) -> None:
        self.counts.setdefault(table, Counter())[key] += n

    def reject(self, source: str, path: str, reason: str, row: int | None = None) -> None:
        issue = Issue(source, str(path), reason, row)
        self.rejected.append(issue)
        log.warning("rejected %s", issue.line())

    def drop(self, source: str, path: str, reason: str, row: int | None = None) -> None:
        self.dropped.append(Issue(source, str(path), reason, row))

    def warn(self, source: str, path: str, reason: str, row: int | None = None) -> None:
        issue = Issue(source, str(path), reason, row)
        self.warnings.append(issue)
        log.warning("warning %s", issue.line())

    def absorb(self, other: StageReport) -> None:
        """Append another report's issues after this one's and add its counts (one stage, two writers)."""
        for table, counter in other.counts.items():
            self.counts.setdefault(table, Counter()).update(counter)
        self.rejected += other.rejected
        self.dropped += other.dropped
        self.warnings += other.warnings

    def finish(self) -> None:
        self.seconds = round(time.monotonic() - self.started, 3)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "seconds": self.seconds,
            "counts": {table: dict(sorted(c.items())) for table, c in sorted(self.counts.items())},
            "rejected": [vars(i) for i in self.rejected],
            "dropped": [vars(i) for i in self.dropped],
            "warnings": [vars(i) for i in self.warnings],
        }

    def write(self, path: Path) -> None:
        """Write the report; the timing lives in its own file so the report itself is deterministic."""
        data = self.to_dict()
        seconds = data.pop("seconds")
        with artifacts.atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        with artifacts.atomic_path(path.with_suffix(".time.json")) as tmp:
            tmp.write_text(json.dumps({"seconds": seconds}) + "\n", encoding="utf-8")

    def summary(self, headline: str) -> str:
        return (
            f"{self.stage}: {headline}; {len(self.rejected)} rejected, {len(self.dropped)} dropped,"
            f" {len(self.warnings)} warnings"
            f" in {self.seconds:.1f}s"
        )
