"""Helpers the four release readers share: locate the release root, read CSVs, name files in reports.

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
from collections.abc import Iterator, Sequence
from pathlib import Path

from build.report import StageReport

MAX_DEPTH = 3  # some unzips nest the release root twice; a little slack on top of that
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


def find_root(folder: Path, marker: str, refused: list[Path] | None = None) -> Path | None:
    """The shallowest folder holding `marker`, from `folder` itself down to MAX_DEPTH levels below it.

    `marker` is a file name or a relative path ("annotations/train.csv"). Siblings are searched in name
    order, so when a download holds two copies the choice is still deterministic. None when absent.
    Subfolders that lead outside `folder` (symlinks) are not searched; they are added to `refused`.
    """
    level = [folder]
    for _ in range(MAX_DEPTH + 1):
        for candidate in level:
            if (candidate / marker).is_file():
                return candidate
        level = [child for parent in level for child in _subfolders(parent, folder, refused)]
    return None


def _subfolders(parent: Path, folder: Path, refused: list[Path] | None) -> list[Path]:
    try:
        children = sorted(child for child in parent.iterdir() if child.is_dir())
    except OSError:  # missing or unreadable folder: nothing to search below it
        return []
    inside = []
    for child in children:
        if child.is_symlink() and outside(child, folder) is not None:
            if refused is not None:
                refused.append(child)
            continue
        inside.append(child)
    return inside


def release_root(folder: Path, marker: str, report: StageReport, source: str) -> Path | None:
    """find_root, plus the 'source not found' warning every reader owes when a release is absent, and a
    rejection for every symlinked folder that leads outside `folder` (it is not searched)."""
    refused: list[Path] = []
    root = find_root(folder, marker, refused)
    reject_folders(refused, folder, report, source)
    if root is None:
        report.warn(source, ".", f"source not found: no {marker} in the folder or {MAX_DEPTH} levels below")
    return root


def reject_folders(folders: Sequence[Path], base: Path, report: StageReport, source: str) -> None:
    for child in folders:
        report.reject(source, relpath(child, base), f"{outside(child, base)}: folder refused, not searched")


def relpath(path: Path, base: Path | None) -> str:
    """`path` relative to `base` with posix separators, so records and reports do not depend on the host."""
    if base is not None and path.is_relative_to(base):
        path = path.relative_to(base)
    return path.as_posix()


def read_csv_rows(
    path: Path, required: Sequence[str], report: StageReport, source: str, *, base: Path | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row by column name) for each data row; the header is line 1.

    Rejects, naming the file (relative to `base`) and line: a file that leads outside `base` (a symlink;
    not opened), an unreadable or empty file, a header without a `required` column or repeating one
    (then nothing is yielded), a row whose field count differs from the header's (its values could sit
    under the wrong names), and undecodable text (the rest of the file is skipped). Blank lines are
    skipped. Values are returned verbatim; a UTF-8 byte-order mark is dropped, CRLF line ends are fine,
    extra columns are ignored.
    """
    shown = relpath(path, base)
    escape = None if base is None else outside(path, base)
    if escape is not None:
        report.reject(source, shown, f"{escape}: CSV refused, not read")
        return
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        report.reject(source, shown, f"cannot read CSV: {exc.strerror or exc}")
        return
    with handle:
        lines = csv.reader(handle)
        try:
            first = next(lines, None)
            if first is None:
                report.reject(source, shown, "empty CSV: no header line")
                return
            header = [name.strip() for name in first]
            missing = [name for name in required if name not in header]
            if missing:
                report.reject(source, shown, f"header lacks column(s) {', '.join(missing)}",
                              row=lines.line_num)
                return
            repeated = [name for name in required if header.count(name) > 1]
            if repeated:
                report.reject(source, shown, f"header repeats column(s) {', '.join(repeated)}",
                              row=lines.line_num)
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
    """True if the file an annotation points at exists inside `base`; otherwise reject it once, with its
    path and the CSV lines that referenced it, so a missing or refused image never vanishes silently."""
    shown = ", ".join(str(line) for line in lines[:SHOWN_LINES])
    if len(lines) > SHOWN_LINES:
        shown += f" (+{len(lines) - SHOWN_LINES} more)"
    escape = outside(path, base)
    if escape is not None:
        report.reject(source, relpath(path, base), f"{escape}: refused, not read; referenced by {csv_name} "
                                                   f"line(s) {shown}")
        return False
    if path.is_file():
        return True
    report.reject(source, relpath(path, base), f"missing file, referenced by {csv_name} line(s) {shown}")
    return False


SEXES = {"f": "F", "female": "F", "m": "M", "male": "M"}


def sex_code(value: object) -> str | None:
    """`F` or `M` from the spellings releases use (F, M, female, male, any case); None for anything else,
    never a guess."""
    return SEXES.get(str(value or "").strip().lower())
