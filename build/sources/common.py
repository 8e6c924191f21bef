"""Helpers the four release readers share: locate the release root, read CSVs, name files in reports.

Format-agnostic on purpose (buu, csxa, rsna and vindr import it): nothing here knows a release. Every
problem goes to the StageReport with the file (relative to the reader's folder, posix) and line, never
to an exception, so one bad row or file cannot stop a build.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from build.report import StageReport

MAX_DEPTH = 3  # some unzips nest the release root twice; a little slack on top of that
SHOWN_LINES = 5  # line numbers quoted in one reason before "+N more"


def find_root(folder: Path, marker: str) -> Path | None:
    """The shallowest folder holding `marker`, from `folder` itself down to MAX_DEPTH levels below it.

    `marker` is a file name or a relative path ("annotations/train.csv"). Siblings are searched in name
    order, so when a download holds two copies the choice is still deterministic. None when absent.
    """
    level = [folder]
    for _ in range(MAX_DEPTH + 1):
        for candidate in level:
            if (candidate / marker).is_file():
                return candidate
        level = [child for parent in level for child in _subfolders(parent)]
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:  # missing or unreadable folder: nothing to search below it
        return []


def release_root(folder: Path, marker: str, report: StageReport, source: str) -> Path | None:
    """find_root, plus the 'source not found' warning every reader owes when a release is absent."""
    root = find_root(folder, marker)
    if root is None:
        report.warn(source, ".", f"source not found: no {marker} in the folder or {MAX_DEPTH} levels below")
    return root


def relpath(path: Path, base: Path | None) -> str:
    """`path` relative to `base` with posix separators, so records and reports do not depend on the host."""
    if base is not None and path.is_relative_to(base):
        path = path.relative_to(base)
    return path.as_posix()


def read_csv_rows(
    path: Path, required: Sequence[str], report: StageReport, source: str, *, base: Path | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row by column name) for each data row; the header is line 1.

    Rejects, naming the file (relative to `base`) and line: an unreadable file, a header without a
    `required` column (then nothing is yielded), a row whose field count differs from the header's
    (its values could sit under the wrong names), and undecodable text (the rest of the file is skipped).
    Blank lines are skipped. Values are returned verbatim; a UTF-8 byte-order mark is dropped.
    """
    shown = relpath(path, base)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        report.reject(source, shown, f"cannot read CSV: {exc.strerror or exc}")
        return
    with handle:
        lines = csv.reader(handle)
        try:
            header = [name.strip() for name in next(lines, [])]
            missing = [name for name in required if name not in header]
            if missing:
                report.reject(source, shown, f"header lacks column(s) {', '.join(missing)}", row=1)
                return
            for values in lines:
                if not values:
                    continue
                if len(values) != len(header):
                    report.reject(source, shown, f"{len(values)} fields, header has {len(header)}",
                                  row=lines.line_num)
                    continue
                yield lines.line_num, dict(zip(header, values))
        except (csv.Error, UnicodeDecodeError) as exc:
            report.reject(source, shown, f"unreadable CSV after line {lines.line_num}, rest skipped: {exc}")


def referenced_file(
    path: Path, base: Path, report: StageReport, source: str, csv_name: str, lines: Sequence[int]
) -> bool:
    """True if the file an annotation points at exists; otherwise reject it once, with its path and the
    CSV lines that referenced it, so a missing image never vanishes silently."""
    if path.is_file():
        return True
    shown = ", ".join(str(line) for line in lines[:SHOWN_LINES])
    if len(lines) > SHOWN_LINES:
        shown += f" (+{len(lines) - SHOWN_LINES} more)"
    report.reject(source, relpath(path, base), f"missing file, referenced by {csv_name} line(s) {shown}")
    return False


SEXES = {"f": "F", "female": "F", "m": "M", "male": "M"}


def sex_code(value: object) -> str | None:
    """`F` or `M` from the spellings releases use (F, M, female, male, any case); None for anything else,
    never a guess."""
    return SEXES.get(str(value or "").strip().lower())
