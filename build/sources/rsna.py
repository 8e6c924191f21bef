"""Reader of the RSNA 2024 Lumbar Spine Degenerative Classification release (docs/sources.md §3).

One record per annotated slice, i.e. per distinct (study, series, instance) of
train_label_coordinates.csv, with one finding per coordinate row: the condition string as written, its
level, and the study's grade for that condition and level from train.csv. The view is the series
description. No image file is opened here: a file that exists is imaging's to judge. The annotation
points travel with the record, and ingest warns about any that lies outside the slice once a worker has
read its pixels (the finding is kept: the build uses the level, not the point). A slice that resolves
outside the source folder (a symlink) is rejected and never opened.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

from build.records import Finding, Point, SourceRecord
from build.report import StageReport
from build.sources.common import read_csv_rows, referenced_file
from build.sources.release import Release, locate
from spinebench import LEVELS

SOURCE = "rsna"
MARKER = "train_label_coordinates.csv"
GRADES_CSV = "train.csv"
SERIES_CSV = "train_series_descriptions.csv"
CONDITIONS = (
    "Spinal Canal Stenosis",
    "Left Neural Foraminal Narrowing",
    "Right Neural Foraminal Narrowing",
    "Left Subarticular Stenosis",
    "Right Subarticular Stenosis",
)
GRADES = ("Normal/Mild", "Moderate", "Severe")
SERIES_DESCRIPTIONS = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")
UNKNOWN = "unknown"
DESCRIBE = f"{GRADES_CSV} and {MARKER} beside train_images/"

Slice = tuple[int, int, int]  # study, series, instance
Label = tuple[str, str]  # condition, level


def signature(release: Release) -> bool:
    return (release.is_file(GRADES_CSV) and release.is_file(MARKER) and release.is_dir("train_images"))


def read_release(folder: Path, report: StageReport) -> Iterator[SourceRecord]:
    """Records of the release found inside `folder` (see `read`)."""
    return read(locate(folder, SOURCE, signature, DESCRIBE, report), report)


def read(release: Release, report: StageReport) -> Iterator[SourceRecord]:
    """Records of the release, sorted numerically by study, series, instance."""
    views = _SeriesViews(release, report)
    grades = _Grades(release, report)
    slices, points = _annotated_slices(release, report)
    for (study, series, instance), labels in sorted(slices.items()):
        path = f"train_images/{study}/{series}/{instance}.dcm"
        if not referenced_file(release, path, report, SOURCE, MARKER, sorted(labels.values())):
            continue
        findings = (Finding(c, level, grades.severity(study, c, level)) for c, level in labels)
        yield SourceRecord(
            source=SOURCE,
            image_key=f"{study}/{series}/{instance}",
            patient_id=str(study),
            modality="MRI",
            region="lumbar",
            view=views.view(study, series),
            path=path,
            findings=tuple(sorted(findings)),
            points=points.get((study, series, instance), ()),
        )


def _annotated_slices(release: Release, report: StageReport
                      ) -> tuple[dict[Slice, dict[Label, int]], dict[Slice, tuple[Point, ...]]]:
    """Slice -> {(condition, level): first CSV line}, and slice -> the points of those rows (when the CSV
    has x and y columns); rejects rows with unknown strings or bad ids, warns about points that are not
    numbers."""
    shown = release.shown(MARKER)
    columns = ("study_id", "series_id", "instance_number", "condition", "level")
    slices: dict[Slice, dict[Label, int]] = {}
    points: dict[Slice, tuple[Point, ...]] = {}
    for line, row in read_csv_rows(release, MARKER, columns, report, SOURCE):
        ids = _integer_ids(row, columns[:3], report, shown, line)
        if ids is None:
            continue
        label = (row["condition"], row["level"])
        if label[0] not in CONDITIONS:
            report.reject(SOURCE, shown, f"unknown condition {label[0]!r}", row=line)
            continue
        if label[1] not in LEVELS:
            report.reject(SOURCE, shown, f"unknown level {label[1]!r}", row=line)
            continue
        labels = slices.setdefault(ids, {})
        if label in labels:
            report.warn(SOURCE, shown, f"duplicate of line {labels[label]} ({label[0]} {label[1]} on "
                                       f"{'/'.join(map(str, ids))}); kept one", row=line)
            continue
        labels[label] = line
        point = _point(row, shown, line, report) if "x" in row and "y" in row else None
        if point is not None:
            points[ids] = (*points.get(ids, ()), point)
    return slices, points


def _point(row: dict[str, str], shown: str, line: int, report: StageReport) -> Point | None:
    """The row's point, or None after warning that it is not a pair of finite numbers."""
    try:
        x, y = float(row["x"]), float(row["y"])
    except ValueError:
        x = y = math.nan
    if math.isfinite(x) and math.isfinite(y):
        return Point(MARKER, line, x, y)
    report.warn(SOURCE, shown, f"point x={row['x']!r}, y={row['y']!r} is not a pair of numbers; finding kept",
                row=line)
    return None


def _integer_ids(
    row: dict[str, str], names: tuple[str, ...], report: StageReport, shown: str, line: int
) -> tuple[int, ...] | None:
    """The row's ids as integers (they name folders and files), or None after rejecting the row."""
    for name in names:
        if not re.fullmatch(r"[0-9]+", row[name]):
            report.reject(SOURCE, shown, f"non-integer {name} {row[name]!r}", row=line)
            return None
    return tuple(int(row[name]) for name in names)


class _SeriesViews:
    """Series description per (study, series); says once per series when it has to answer 'unknown'."""

    def __init__(self, release: Release, report: StageReport) -> None:
        self.report = report
        self.shown = release.shown(SERIES_CSV)
        self.views: dict[tuple[int, ...], str] = {}
        self.warned: set[tuple[int, int]] = set()
        first_lines: dict[tuple[int, ...], int] = {}
        columns = ("study_id", "series_id", "series_description")
        for line, row in read_csv_rows(release, SERIES_CSV, columns, report, SOURCE):
            ids = _integer_ids(row, columns[:2], report, self.shown, line)
            if ids is None:
                continue
            description = row["series_description"]
            first = first_lines.setdefault(ids, line)
            if first != line:
                view = self.views[ids]
                again = "listed again" if view == description else f"described again as {description!r}"
                report.warn(SOURCE, self.shown, f"series {ids[0]}/{ids[1]} {again}; kept {view!r} of line "
                                                f"{first}", row=line)
                continue
            self.views[ids] = description
            if description not in SERIES_DESCRIPTIONS:
                report.warn(SOURCE, self.shown, f"unexpected series_description {description!r}, kept",
                            row=line)

    def view(self, study: int, series: int) -> str:
        view = self.views.get((study, series))
        if view is None and (study, series) not in self.warned:
            self.warned.add((study, series))
            self.report.warn(SOURCE, self.shown, f"series {study}/{series} not listed: view {UNKNOWN}")
        return view or UNKNOWN


class _Grades:
    """train.csv by study; severity() says once per study, or study/condition/level, when it has none."""

    def __init__(self, release: Release, report: StageReport) -> None:
        self.report = report
        self.shown = release.shown(GRADES_CSV)
        self.rows: dict[int, tuple[int, dict[str, str]]] = {}
        self.warned: set[tuple] = set()
        for line, row in read_csv_rows(release, GRADES_CSV, ("study_id",), report, SOURCE):
            ids = _integer_ids(row, ("study_id",), report, self.shown, line)
            if ids is None:
                continue
            first = self.rows.setdefault(ids[0], (line, row))[0]
            if first != line:
                report.warn(SOURCE, self.shown, f"study {ids[0]} repeated; kept line {first}", row=line)

    def severity(self, study: int, condition: str, level: str) -> str | None:
        """The grade in column `{condition}_{level}` (e.g. spinal_canal_stenosis_l4_l5), found by name."""
        if study not in self.rows:
            self._warn_once((study,), f"study {study} not in {GRADES_CSV}: severities empty")
            return None
        line, row = self.rows[study]
        column = f"{condition.lower().replace(' ', '_')}_{level.lower().replace('/', '_')}"
        grade = row.get(column, "")
        if grade in GRADES:
            return grade
        problem = "no grade" if grade == "" else f"unexpected grade {grade!r}"
        self._warn_once((study, condition, level), f"{problem} for study {study}, {condition} {level}: "
                                                   "severity empty", line)
        return None

    def _warn_once(self, key: tuple, reason: str, line: int | None = None) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.report.warn(SOURCE, self.shown, reason, row=line)
