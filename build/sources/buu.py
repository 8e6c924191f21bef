"""Reader of the BUU-LSPINE release (docs/sources.md §1): lumbar X-rays, AP and lateral, spondylolisthesis.

One record per `AP/<stem>.jpg` or `LA/<stem>.jpg` whose stem follows the release grammar and that has its
endplate CSV. Patient, sex, age and view come from the stem; the CSV's label column gives the slips.

Decisions where the release is vague:
- A non-zero label on the bottom-endplate row of Lk is a slip at level Lk/L(k+1); the type integer is
  unknown, so any non-zero is raw label `slip`. No non-zero label anywhere: raw label `normal`.
- A non-zero label on a top-endplate row breaks the release's convention: it could mean the vertebra's
  own level or the disc above, and a wrong level would be a wrong gold answer. Warned; the image keeps
  its diagnosis (`slip`) but carries no levels at all, since its level set can no longer be trusted.
- A CSV with another row count than 10 (AP) / 11 (LA) cannot be aligned with the endplates: warned, the
  image keeps its diagnosis from the labels it has, without levels.
- Swapped points in a row (x1 > x2) are a known release quirk that touches only coordinates, which
  SpineBench does not use: warned with the row number, and the labels are read as usual.
- Rejected images: a name off the grammar, a mirror's duplicate copy (`<stem>(1).jpg`), a view digit
  that contradicts the folder (its CSV would be read against the wrong endplate list), no CSV, a CSV
  that is empty or has a row that is not 5 numbers (reason with the line number).
- The workbook is optional and only cross-checks sex and age against the stem (warnings); the stem wins.
  It is an .xlsx (a zip) that openpyxl reads in memory: its member names never become paths.
- Anything that resolves outside the source folder (a symlinked image, CSV, workbook or folder) is
  rejected and never opened (common.outside).
- The release root is the folder (or zip member folder, as in `BUU-LSPINE_400.zip`) whose AP/ or LA/
  holds a .jpg + .csv pair, at any depth (unzips nest it once or twice).
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException

from build.records import Finding, SourceRecord, level_name
from build.report import StageReport
from build.sources.common import sex_code
from build.sources.release import Release, locate

SOURCE = "buu"
STEM = re.compile(r"^(\d{4})-([FM])-(\d{3})Y([01])$")
COPY = re.compile(r"^(?P<stem>.+?)\s*\(\d+\)$")  # mirrors' duplicates: `1665-M-014Y1(1)`
VIEWS = {"0": ("AP", "AP"), "1": ("LA", "lateral")}  # stem view digit -> (release folder, record view)
EXPECTED_ROWS = {"AP": 10, "LA": 11}  # endplates per view: L1 top .. L5 bottom, LA adds S1 top
VERTEBRAE = ("L1", "L2", "L3", "L4", "L5", "S1")
COLUMNS = "x1,y1,x2,y2,label"
WORKBOOK = "*_report.xlsx"
SHEET_PREFIX = "diag_all"
DESCRIBE = "AP/ or LA/ folder with <stem>.jpg + <stem>.csv pairs"

Labels = list[tuple[int, float]]  # (CSV line, label) per endplate row, cranial to caudal
Demographics = dict[str, tuple[str | None, int | None]]  # stem -> (sex, age) as the workbook says


def signature(release: Release) -> bool:
    """AP/ or LA/ holding at least one <stem>.jpg with its <stem>.csv (the workbook is optional)."""
    for view_folder, _ in VIEWS.values():
        names = set(release.names(view_folder))
        if any(name[:-4] + ".csv" in names for name in names if name.lower().endswith(".jpg")):
            return True
    return False


def read_release(folder: Path, report: StageReport) -> Iterator[SourceRecord]:
    """Records of the release found inside `folder` (see `read`)."""
    return read(locate(folder, SOURCE, signature, DESCRIBE, report), report)


def read(release: Release, report: StageReport) -> Iterator[SourceRecord]:
    """Records of the release: AP images, then LA images, each by file name."""
    workbook = _workbook(release, report)
    for view_folder, _ in VIEWS.values():
        escape = release.problem(view_folder)
        if escape is not None:
            report.reject(SOURCE, release.shown(view_folder), f"{escape}: folder refused, not read")
        elif release.is_dir(view_folder):
            yield from _read_view(release, view_folder, workbook, report)
        else:
            report.warn(SOURCE, release.shown(view_folder), f"no {view_folder}/ folder in the release")


def _read_view(release: Release, view_folder: str, workbook: Demographics, report: StageReport
               ) -> Iterator[SourceRecord]:
    """Pair <stem>.jpg with <stem>.csv in one view folder; a CSV without its image is only warned.
    Dot files (`._x.jpg` from macOS copies) are file-system litter, not release files."""
    entries = [f"{view_folder}/{name}" for name in release.names(view_folder) if not name.startswith(".")]
    for rel in entries:
        path = release.path(rel)
        if path is not None and path.is_symlink() and not path.exists():
            report.reject(SOURCE, release.shown(rel), "broken symlink (its target is missing or loops)")
    files = [rel for rel in entries if release.is_file(rel)]
    images = {PurePosixPath(rel).stem: rel for rel in files if rel.lower().endswith(".jpg")}
    for rel in files:
        if rel.lower().endswith(".csv") and PurePosixPath(rel).stem not in images:
            report.warn(SOURCE, release.shown(rel), "annotation CSV without image")
    for stem, image in images.items():
        record = _record(release, image, f"{view_folder}/{stem}.csv", workbook, report)
        if record is not None:
            yield record


def _record(release: Release, image: str, table: str, workbook: Demographics, report: StageReport
            ) -> SourceRecord | None:
    shown = release.shown(image)
    name = PurePosixPath(image)
    fields = _stem_fields(release, name, shown, report)
    if fields is None:
        return None
    escape = release.problem(image)
    if escape is not None:
        report.reject(SOURCE, shown, f"{escape}: image refused, not read")
        return None
    escape = release.problem(table)
    if escape is not None:
        report.reject(SOURCE, release.shown(table), f"{escape}: annotation CSV refused, not read "
                                                    f"(image {name.name} not used)")
        return None
    if not release.is_file(table):
        report.reject(SOURCE, shown, "no annotation CSV")
        return None
    labels = _labels(release, table, report)
    if labels is None:
        return None
    patient, sex, age, digit = fields.groups()
    view_folder, view = VIEWS[digit]
    _cross_check(workbook.get(name.stem), sex, int(age), shown, report)
    return SourceRecord(
        source=SOURCE,
        image_key=name.stem,
        patient_id=patient,
        modality="X-ray",
        region="lumbar",
        view=view,
        path=image,
        findings=_findings(labels, EXPECTED_ROWS[view_folder], release.shown(table), report),
        sex=sex,
        age=int(age),
    )


def _stem_fields(release: Release, image: PurePosixPath, shown: str, report: StageReport
                 ) -> re.Match[str] | None:
    """The stem's fields, or None after rejecting a duplicate copy, a foreign name or a misfiled view."""
    match = STEM.match(image.stem)
    if match is None:
        report.reject(SOURCE, shown, _name_problem(release, image))
        return None
    view_folder, view = VIEWS[match[4]]
    if image.parent.name != view_folder:
        report.reject(SOURCE, shown,
                      f"view digit Y{match[4]} ({view}) but the file is in {image.parent.name}/")
        return None
    return match


def _name_problem(release: Release, image: PurePosixPath) -> str:
    copy = COPY.match(image.stem)
    if copy is None or STEM.match(copy["stem"]) is None:
        return f"file name does not match {STEM.pattern}"
    original = image.with_name(copy["stem"] + image.suffix)
    missing = "" if release.is_file(str(original)) else " (the original is missing)"
    return f"duplicate copy of {original.name}{missing}"


def _labels(release: Release, table: str, report: StageReport) -> Labels | None:
    """The label of every endplate row; None after rejecting the image for a row that is not 5 numbers,
    since a CSV we cannot read cannot tell a normal spine from a slipped one."""
    shown = release.shown(table)
    labels: Labels = []
    try:
        with io.TextIOWrapper(release.open(table), newline="", encoding="utf-8-sig") as handle:
            lines = csv.reader(handle)
            for cells in lines:
                if not cells:
                    continue
                problem = _row_problem(cells)
                if problem:
                    report.reject(SOURCE, shown, problem, row=lines.line_num)
                    return None
                if float(cells[0]) > float(cells[2]):
                    report.warn(SOURCE, shown, "endplate points swapped (x1 > x2); harmless, the build uses "
                                "only the label", row=lines.line_num)
                labels.append((lines.line_num, float(cells[-1])))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report.reject(SOURCE, shown, f"unreadable annotation CSV: {exc}")
        return None
    if not labels:
        report.reject(SOURCE, shown, "empty annotation CSV")
        return None
    return labels


def _row_problem(cells: list[str]) -> str | None:
    if len(cells) != len(COLUMNS.split(",")):
        return f"{len(cells)} cells, expected 5 ({COLUMNS})"
    bad = next((cell for cell in cells if not _is_number(cell)), None)
    return None if bad is None else f"non-numeric cell {bad!r}"


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _findings(labels: Labels, expected: int, shown: str, report: StageReport) -> tuple[Finding, ...]:
    """`normal`, or one `slip` per slipped level; a single level-less `slip` when levels are unreliable."""
    slipped = [(index, line, label) for index, (line, label) in enumerate(labels) if label != 0]
    if len(labels) != expected:
        size = "short" if len(labels) < expected else "long"
        report.warn(SOURCE, shown, f"{size} CSV: {len(labels)} rows, expected {expected}; no level questions")
        return (Finding("slip"),) if slipped else (Finding("normal"),)
    if not slipped:
        return (Finding("normal"),)
    top_rows = [(index, line, label) for index, line, label in slipped if index % 2 == 0]
    for index, line, label in top_rows:
        vertebra = VERTEBRAE[index // 2]
        report.warn(SOURCE, shown, f"label {label:g} on the {vertebra} top-endplate row (expected only on "
                                   "bottom rows); levels unreliable, no level questions", row=line)
    if top_rows:
        return (Finding("slip"),)
    return tuple(Finding("slip", level_name(VERTEBRAE[i // 2], VERTEBRAE[i // 2 + 1])) for i, _, _ in slipped)


def _workbook(release: Release, report: StageReport) -> Demographics:
    """Sex and age by image stem from the optional report workbook; empty when it is absent or unusable."""
    names = [name for name in release.names() if fnmatch(name, WORKBOOK) and release.is_file(name)]
    if not names:
        return {}
    shown = release.shown(names[0])
    escape = release.problem(names[0])
    if escape is not None:
        report.reject(SOURCE, shown, f"{escape}: workbook refused, not read; sex/age not cross-checked")
        return {}
    try:
        book = openpyxl.load_workbook(io.BytesIO(release.read_bytes(names[0])), read_only=True,
                                      data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, InvalidFileException) as exc:
        report.warn(SOURCE, shown, f"workbook unreadable, sex/age not cross-checked: {exc}")
        return {}
    try:
        return _demographics(book, shown, report)
    finally:
        book.close()


def _demographics(book: openpyxl.Workbook, shown: str, report: StageReport) -> Demographics:
    sheet = next((book[name] for name in book.sheetnames if name.startswith(SHEET_PREFIX)), None)
    if sheet is None:
        report.warn(SOURCE, shown, f"no {SHEET_PREFIX}* sheet, sex/age not cross-checked")
        return {}
    rows = sheet.iter_rows(values_only=True)
    header = [str(cell).strip() for cell in next(rows, ())]
    missing = [name for name in ("filename", "gender", "age") if name not in header]
    if missing:
        report.warn(SOURCE, shown, f"sheet {sheet.title} lacks column(s) {', '.join(missing)}, "
                                   "sex/age not cross-checked")
        return {}
    name, sex, age = (header.index(column) for column in ("filename", "gender", "age"))
    return {
        Path(str(row[name]).strip()).stem: (sex_code(row[sex]), _age(row[age]))
        for row in rows if len(row) > max(name, sex, age) and row[name] is not None
    }


def _age(value: object) -> int | None:
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):
        return None


def _cross_check(expected: tuple[str | None, int | None] | None, sex: str, age: int, shown: str,
                 report: StageReport) -> None:
    """Warn where the workbook disagrees with the stem; the stem stays authoritative."""
    if expected is None:
        return
    if expected[0] is not None and expected[0] != sex:
        report.warn(SOURCE, shown, f"workbook says sex {expected[0]}, file name says {sex}")
    if expected[1] is not None and expected[1] != age:
        report.warn(SOURCE, shown, f"workbook says age {expected[1]}, file name says {age}")
