"""Helpers the four release readers share: read CSVs, check references, name files in reports.

Format-agnostic on purpose (buu, csxa, rsna and vindr import it): nothing here knows a release. Every
problem goes to the StageReport with the file (relative to the reader's folder, posix) and line, never
to an exception, so one bad row or file cannot stop a build.

The reader's folder (RAW/<source>) is a boundary: a file or folder that resolves outside it (a symlink
leaving the folder, or one that cannot be resolved) is refused with a reason and never opened. Symlinks
that stay inside, and RAW/<source> itself being a symlink, are fine.
"""

from __future__ import annotations

import csv
import errno
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from build.report import StageReport

if TYPE_CHECKING:
    from build.sources.release import Release

SHOWN_LINES = 5  # line numbers quoted in one reason before "+N more"
LOOP = "symlink loop: the path cannot be resolved"


def outside(path: Path, folder: Path) -> str | None:
    """Why `path` may not be read as part of the release in `folder`, or None when it may.

    Lexically every path a reader builds sits under `folder`; only symlinks can lead out of it, so this
    resolves both (no file is opened) and refuses a target outside, or a link that cannot be resolved
    (a loop). The reason says where the link leads, so the maintainer can fix the download.
    """
    try:
        target, boundary = path.resolve(), folder.resolve()
    except RuntimeError:  # how Python 3.11 reports a symlink loop (3.13 raises OSError ELOOP)
        return LOOP
    except OSError as exc:
        return LOOP if exc.errno == errno.ELOOP else f"symlink cannot be resolved: {exc.strerror or exc}"
    if target.is_relative_to(boundary):
        return None
    return f"symlink to {target} leads outside the source folder"


def relpath(path: Path, base: Path | None) -> str:
    """`path` relative to `base` with posix separators, so records and reports do not depend on the host."""
    if base is not None and path.is_relative_to(base):
        path = path.relative_to(base)
    return path.as_posix()


def read_csv_rows(
    release: Release, rel: str, required: Sequence[str], report: StageReport, source: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row by column name) for each data row of `rel` in `release`; the header is line 1.

    Rejects, naming the file and the row's first line: a file that leads outside the source folder (a
    symlink; not opened), an unreadable or empty file, a header without a `required` column or repeating
    one (then nothing is yielded), a row whose field count differs from the header's (its values could
    sit under the wrong names), a row holding bytes that are not UTF-8 (named, e.g. a Windows-1252 byte),
    and a row the csv module cannot parse (a field over its size limit). Each costs only its row. Blank
    lines are skipped. Values are returned verbatim; a UTF-8 byte-order mark is dropped, CRLF line ends are
    fine, extra columns are ignored.
    """
    shown = release.shown(rel)
    escape = release.problem(rel)
    if escape is not None:
        report.reject(source, shown, f"{escape}: CSV refused, not read")
        return
    try:
        handle = release.open(rel)
    except OSError as exc:
        report.reject(source, shown, f"cannot read CSV: {exc.strerror or exc}")
        return
    with io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        lines = csv.reader(text)
        rows = _rows(lines, shown, report, source)
        first = next(rows, None)
        if first is None:
            report.reject(source, shown, "empty CSV: no header line")
            return
        header = [name.strip() for name in first[1]]
        problem = _header_problem(header, required)
        if problem:
            report.reject(source, shown, problem, row=first[0])
            return
        for line, values in rows:
            if len(values) != len(header):
                report.reject(source, shown, f"{len(values)} fields, header has {len(header)}", row=line)
                continue
            yield line, dict(zip(header, values))


def _header_problem(header: list[str], required: Sequence[str]) -> str | None:
    if any(_undecodable(name) for name in header):
        return f"header is not UTF-8 ({_undecodable(','.join(header))}): nothing read"
    missing = [name for name in required if name not in header]
    if missing:
        return f"header lacks column(s) {', '.join(missing)}"
    repeated = [name for name in required if header.count(name) > 1]
    if repeated:
        return f"header repeats column(s) {', '.join(repeated)}"
    return None


def _rows(lines, shown: str, report: StageReport, source: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, values) of every non-blank row that parses and decodes; the others are rejected here."""
    while True:
        start = lines.line_num + 1
        try:
            values = next(lines)
        except StopIteration:
            return
        except csv.Error as exc:  # the csv module drops the rest of the physical line and carries on
            report.reject(source, shown, f"unparseable row, skipped: {exc}", row=start)
            continue
        if not values:
            continue
        bad = next((value for value in values if _undecodable(value)), None)
        if bad is not None:
            report.reject(source, shown, f"row is not UTF-8 ({_undecodable(bad)}), skipped", row=start)
            continue
        yield start, values


def _undecodable(value: str) -> str | None:
    """What is wrong with a value decoded with surrogateescape, or None when it was valid UTF-8."""
    raw = [ord(char) - 0xDC00 for char in value if "\udc80" <= char <= "\udcff"]
    if not raw:
        return None
    byte = raw[0]
    guess = bytes([byte]).decode("cp1252", errors="replace")
    return (f"byte 0x{byte:02x} is invalid UTF-8; in Windows-1252 it would be {guess!r}: save the file as "
            "UTF-8")


def referenced_file(
    release: Release, rel: str, report: StageReport, source: str, csv_name: str, lines: Sequence[int]
) -> bool:
    """True if the file an annotation points at exists inside the release; otherwise reject it once, with
    its path and the CSV lines that referenced it, so a missing or refused image never vanishes silently."""
    shown = ", ".join(str(line) for line in lines[:SHOWN_LINES])
    if len(lines) > SHOWN_LINES:
        shown += f" (+{len(lines) - SHOWN_LINES} more)"
    escape = release.problem(rel)
    if escape is not None:
        report.reject(source, release.shown(rel), f"{escape}: refused, not read; referenced by {csv_name} "
                                                  f"line(s) {shown}")
        return False
    if release.is_file(rel):
        return True
    report.reject(source, release.shown(rel), f"missing file, referenced by {csv_name} line(s) {shown}")
    return False


SEXES = {"f": "F", "female": "F", "m": "M", "male": "M"}


def sex_code(value: object) -> str | None:
    """`F` or `M` from the spellings releases use (F, M, female, male, any case); None for anything else,
    never a guess."""
    return SEXES.get(str(value or "").strip().lower())
