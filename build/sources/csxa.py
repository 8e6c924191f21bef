"""Reader of CSXA, the Cervical Spine X-ray Atlas (docs/sources.md §2), driven by configs/csxa.yaml.

Science Data Bank ships `datasets.xlsx` + `datasets-PNG.zip` + `datasets-JSON.zip`; the workbook's column
names and class strings are not public, so nothing here names a CSXA file or column: the mapping says
which metadata file marks the root (an .xlsx read with openpyxl, or a CSV), which columns may hold the key,
patient, sex, age and class (candidates, the first present wins), how images and keypoint JSONs are found
(globs below the root; zips are entered as folders) and how raw class values become class names.
One record per image, keyed by its stem, which pairs it with its JSON and its metadata row. Ids are text:
a workbook cell typed as a number keeps the leading zeros its number format shows (`0000000`).

Failures, by kind:
- The mapping itself (an unknown key, a wrong type, a missing key): `MappingError` at load time, with
  configs/csxa.yaml, the key and the allowed values (`Mapping` is its pydantic model).
- A mapping that does not fit the files (no key or class column, no image matching a row, no class value
  known): `MappingError` from `find`, before anything is built, printing what was found: sheets, columns,
  the distinct values of each candidate class column, how many image ids matched, and the keys to set.
- One image without a known class is rejected; anything else missing only costs a field (warned).
Files that resolve outside the source folder (symlinks) are refused with a reason and never opened.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from build import config
from build.records import Finding, SourceRecord
from build.report import StageReport
from build.sources.common import read_csv_rows, sex_code
from build.sources.release import Release, SourceError, locate

SOURCE = "csxa"
CONFIG = "configs/csxa.yaml"
CLASS_NAMES = ("lordosis", "straight", "kyphosis", "sigmoid")
MAX_CLASS_VALUES = 12  # a column with more distinct values is no class column
SHOWN_VALUES = 12

Row = tuple[str, int, dict[str, str]]  # (metadata file as shown in reports, line or row, values by column)


class MappingError(SourceError, ValueError):
    """configs/csxa.yaml is invalid, or does not fit the files found (the message says what to set)."""


def _names(value: Any) -> Any:
    """One column name or a list of candidates -> a list; null -> []."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


class MetadataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: list[str] = []
    sheet: str | None = None
    key: list[str] = []
    patient: list[str] = []
    sex: list[str] = []
    age: list[str] = []

    _lists = field_validator("file", "key", "patient", "sex", "age", mode="before")(_names)


class Mapping(BaseModel):
    """configs/csxa.yaml, checked; `classes` keys are trimmed lower-case text, so YAML integers match JSON
    or CSV values and 'Lordosis' matches 'lordosis'."""

    model_config = ConfigDict(extra="forbid")

    root_marker: str | None = None
    images: str
    annotation: str | None = None
    metadata: MetadataSpec | None = None
    class_from: Literal["metadata", "annotation"]
    class_key: list[str]
    classes: dict[str, Literal["lordosis", "straight", "kyphosis", "sigmoid"]]
    region: Literal["cervical", "thoracic", "lumbar"]
    view: Literal["AP", "PA", "lateral"]

    _keys = field_validator("class_key", mode="before")(_names)

    @field_validator("classes", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        return {_fold(key): name for key, name in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self) -> Mapping:
        if not self.class_key:
            raise ValueError("class_key: give at least one column or JSON key")
        if self.class_from == "metadata" and not (self.metadata and self.metadata.file and self.metadata.key):
            raise ValueError("metadata: class_from: metadata needs metadata.file and metadata.key")
        if self.class_from == "annotation" and not self.annotation:
            raise ValueError("annotation: class_from: annotation needs an annotation path or glob")
        if self.annotation and "{stem}" not in self.annotation and not re.search(r"[*?\[]", self.annotation):
            raise ValueError("annotation: must be a path with {stem} or a glob (*, ?, [...])")
        if not (self.root_marker or (self.metadata and self.metadata.file)):
            raise ValueError("root_marker: give a root_marker or metadata.file to find the release root")
        return self

    @classmethod
    def parse(cls, raw: Any) -> Mapping:
        """The checked mapping; MappingError naming the file, each bad key and what it allows."""
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            lines = []
            for problem in error.errors():
                where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
                message = problem["msg"]
                if problem["type"] == "extra_forbidden":
                    model = MetadataSpec if problem["loc"][0] == "metadata" else cls
                    message = f"unknown key; allowed: {', '.join(model.model_fields)}"
                lines.append(f"{CONFIG}: {where}: {message}")
            raise MappingError("invalid CSXA mapping:\n  " + "\n  ".join(lines)) from None


def _fold(value: Any) -> str:
    return str(value).strip().lower()


def mapping(raw: dict[str, Any] | None = None) -> Mapping:
    return Mapping.parse(config.load("csxa") if raw is None else raw)


# --- finding the release and deciding the columns ----------------------------------------------------------


def signature_for(spec: Mapping):
    def signature(release: Release) -> bool:
        if spec.root_marker:
            marked = release.is_file(spec.root_marker)
        else:
            marked = _metadata_file(release, spec) is not None
        return marked and next(_matching(release, spec.images), None) is not None
    return signature


def find(folder: Path, report: StageReport | None = None, raw: dict[str, Any] | None = None) -> Release:
    """The release, after checking that the mapping fits its files (MappingError, with findings, if not)."""
    spec = mapping(raw)
    marker = spec.root_marker or " or ".join(spec.metadata.file)
    release = locate(folder, SOURCE, signature_for(spec), f"{marker} with {spec.images} images below it",
                     report)
    _plan(release, spec, StageReport("ingest"))
    return release


def read_release(folder: Path, report: StageReport, raw: dict[str, Any] | None = None
                 ) -> Iterator[SourceRecord]:
    """Records of the release inside `folder` (see `read`); `raw` replaces configs/csxa.yaml."""
    return read(find(folder, report, raw), report, raw)


@dataclass(frozen=True)
class Plan:
    """What the mapping resolved to on these files."""

    images: dict[str, str]  # stem -> release path
    annotations: dict[str, str]  # stem -> release path (glob annotations only)
    rows: dict[str, Row]  # metadata key -> row
    columns: dict[str, str | None]  # key, patient, sex, age, class -> the column found (or None)


def read(release: Release, report: StageReport, raw: dict[str, Any] | None = None) -> Iterator[SourceRecord]:
    """Records of the release, by image path."""
    spec = mapping(raw)
    plan = _plan(release, spec, report)
    for stem, image in plan.images.items():
        row = plan.rows.get(stem) or plan.rows.get(PurePosixPath(image).name)
        record = _record(release, image, spec, plan, row, report)
        if record is not None:
            yield record


def _plan(release: Release, spec: Mapping, report: StageReport) -> Plan:
    images = _images(release, spec.images, report)
    annotations = {} if not spec.annotation or "{stem}" in spec.annotation else \
        _by_stem(release, spec.annotation)
    if spec.metadata is None or not spec.metadata.file:
        return Plan(images, annotations, {}, {})
    name = _metadata_file(release, spec)
    if name is None:
        raise MappingError(f"CSXA: none of metadata.file {spec.metadata.file} at {release.shown()}")
    table = _table(release, name, spec, report)
    columns = {role: _first(table.header, getattr(spec.metadata, role)) for role in ("key", "patient", "sex",
                                                                                   "age")}
    columns["class"] = _first(table.header, spec.class_key) if spec.class_from == "metadata" else None
    rows = _rows(table, columns["key"], release.shown(name), report) if columns["key"] else {}
    problem = _misfit(spec, columns, rows, images)
    if problem:
        raise MappingError(_findings(release.shown(name), problem, table, columns, rows, images, spec))
    names = set(images) | {PurePosixPath(path).name for path in images.values()}
    for key, (shown, line, _) in rows.items():
        if key not in names:
            report.warn(SOURCE, shown, f"metadata row for {key!r} matches no image", row=line)
    return Plan(images, annotations, rows, columns)


def _misfit(spec: Mapping, columns: dict[str, str | None], rows: dict[str, Row], images: dict[str, str]
            ) -> str | None:
    """Why the mapping cannot work on these files, or None."""
    if columns["key"] is None:
        return f"no key column: none of metadata.key {spec.metadata.key} is a column"
    if spec.class_from == "metadata" and columns["class"] is None:
        return f"no class column: none of class_key {spec.class_key} is a column"
    names = set(images) | {PurePosixPath(path).name for path in images.values()}
    if images and rows and not names & set(rows):
        return "no image id matches a metadata key"
    if spec.class_from == "metadata" and rows:
        values = {_fold(row[2][columns["class"]]) for row in rows.values()} - {""}
        if values and not values & set(spec.classes):
            return f"no value of class column {columns['class']!r} is in `classes`"
    return None


def _findings(shown: str, problem: str, table: _Table, columns: dict[str, str | None], rows: dict[str, Row],
              images: dict[str, str], spec: Mapping) -> str:
    """The message that lets a user fill the mapping in one try."""
    lines = [f"CSXA: {CONFIG} does not fit {shown}: {problem}.", "Found:"]
    lines += [f"  sheet {sheet!r}: columns {header}" for sheet, header in table.sheets.items()]
    if not table.sheets:
        lines.append(f"  columns {table.header}")
    names = set(images) | {PurePosixPath(path).name for path in images.values()}
    by_column: dict[str, int] = {}
    for column in table.header:
        values = Counter(values[column] for _, _, values in table.rows if values.get(column, "") != "")
        by_column[column] = len(names & set(values))
        unique = len(values) == len(table.rows) > 3  # ids, comments: no class
        if 2 <= len(values) <= MAX_CLASS_VALUES and not unique and column != columns.get("key"):
            shown_values = ", ".join(f"{value!r} ({n})" for value, n in values.most_common(SHOWN_VALUES))
            lines.append(f"  candidate class column {column!r}: {shown_values}")
    matching = ", ".join(f"{c!r} {n}" for c, n in sorted(by_column.items(), key=lambda kv: -kv[1]) if n)
    first = table.header[0] if table.header else None
    samples = [values.get(first, "") for _, _, values in table.rows[:3]] if first else []
    lines.append(f"  image ids matched: {len(names & set(rows))} of {len(images)} images ({spec.images}) by the "
                 f"key column; by any column: {matching or 'none'}; image stems look like "
                 f"{sorted(images)[:3]}, column {first!r} like {samples}")
    lines += [
        f"Set in {CONFIG}:",
        "  metadata.key: <the column holding the image stem or file name>",
        "  class_key: <the curvature column>",
        "  classes: {<each raw value>: " + " | ".join(CLASS_NAMES) + "}",
    ]
    if spec.metadata.sheet is None and len(table.sheets) > 1:
        lines.append("  metadata.sheet: <the sheet holding one row per image>")
    return "\n".join(lines)


def _first(header: list[str], candidates: list[str]) -> str | None:
    return next((name for name in candidates if name in header), None)


def _metadata_file(release: Release, spec: Mapping) -> str | None:
    names = [name for name in release.names() if release.is_file(name)]
    for pattern in spec.metadata.file if spec.metadata else ():
        found = sorted(name for name in names if fnmatch(name, pattern))
        if found:
            return found[0]
    return None


def _pattern(glob: str) -> re.Pattern[str]:
    """A path glob as a regex: `**/` any folders (or none), `*` and `?` within one path component."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", glob)
    tokens = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(tokens.get(part, re.escape(part)) for part in parts))


def _matching(release: Release, glob: str) -> Iterator[str]:
    pattern = _pattern(glob)
    return (rel for rel in release.files() if pattern.fullmatch(rel))


def _by_stem(release: Release, glob: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for rel in _matching(release, glob):
        found.setdefault(PurePosixPath(rel).stem, rel)
    return found


def _images(release: Release, glob: str, report: StageReport) -> dict[str, str]:
    """Image files by stem, in path order; a second file with a stem already seen is rejected, because the
    stem is the image's id and what pairs it with its JSON and metadata row. An image that leads outside
    the source folder (a symlink) is rejected and never opened."""
    images: dict[str, str] = {}
    for rel in sorted(_matching(release, glob)):
        path = release.path(rel)
        if path is not None and path.is_symlink() and not path.exists():
            report.reject(SOURCE, release.shown(rel), "broken symlink (its target is missing or loops)")
            continue
        escape = release.problem(rel)
        if escape is not None:
            report.reject(SOURCE, release.shown(rel), f"{escape}: image refused, not read")
            continue
        stem = PurePosixPath(rel).stem
        first = images.setdefault(stem, rel)
        if first != rel:
            report.reject(SOURCE, release.shown(rel),
                          f"duplicate image stem {stem!r} (first: {release.shown(first)})")
    return images


# --- the metadata table ------------------------------------------------------------------------------------


@dataclass
class _Table:
    header: list[str]
    rows: list[tuple[str, int, dict[str, str]]]
    sheets: dict[str, list[str]]  # workbook sheet -> its header ({} for a CSV)


def _table(release: Release, name: str, spec: Mapping, report: StageReport) -> _Table:
    shown = release.shown(name)
    if name.lower().endswith((".xlsx", ".xlsm")):
        return _workbook(release, name, spec, shown)
    header = _csv_header(release, name)
    roles = ("key", "patient", "sex", "age")
    used = [_first(header, getattr(spec.metadata, role)) for role in roles] + [_first(header, spec.class_key)]
    required = [column for column in used if column]  # a repeated one is refused by read_csv_rows
    rows = [(shown, line, row) for line, row in read_csv_rows(release, name, required, report, SOURCE)]
    return _Table(header, rows, {})


def _csv_header(release: Release, name: str) -> list[str]:
    with io.TextIOWrapper(release.open(name), encoding="utf-8-sig", errors="replace", newline="") as handle:
        return [cell.strip() for cell in next(csv.reader(handle), [])]


def _workbook(release: Release, name: str, spec: Mapping, shown: str) -> _Table:
    """The sheet the mapping names, else the first whose header row holds a key candidate; every sheet's
    header is kept for the findings."""
    try:
        book = openpyxl.load_workbook(io.BytesIO(release.read_bytes(name)), read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, InvalidFileException) as exc:
        raise MappingError(f"CSXA: workbook {shown} is unreadable: {exc}") from exc
    try:
        sheets = {sheet.title: [_cell_text(c) for c in next(sheet.iter_rows(max_row=1), ())]
                  for sheet in book.worksheets}
        wanted = spec.metadata.sheet
        if wanted is not None and wanted not in sheets:
            raise MappingError(f"CSXA: {CONFIG}: metadata.sheet {wanted!r} is not in {shown}; sheets: "
                               f"{', '.join(sheets)}")
        title = wanted or next((t for t, header in sheets.items() if _first(header, spec.metadata.key)),
                               next(iter(sheets), None))
        if title is None:
            return _Table([], [], sheets)
        header = [cell.strip() for cell in sheets[title]]
        rows = []
        for number, cells in enumerate(book[title].iter_rows(min_row=2), start=2):
            values = [_cell_text(cell) for cell in cells]
            if any(values):
                rows.append((shown, number, dict(zip(header, values + [""] * (len(header) - len(values))))))
        return _Table(header, rows, sheets)
    finally:
        book.close()


def _cell_text(cell: Any) -> str:
    """A cell as the text it shows: ids typed as numbers keep the zeros of a `0000000` number format."""
    value = getattr(cell, "value", cell)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) and float(value).is_integer():
        digits = str(int(value))
        fmt = getattr(cell, "number_format", "") or ""
        return digits.zfill(len(fmt)) if re.fullmatch(r"0+", fmt) else digits
    return str(value).strip()


def _rows(table: _Table, key: str, shown: str, report: StageReport) -> dict[str, Row]:
    """Rows by key (an image stem or file name); a repeated key is warned and the first row kept."""
    rows: dict[str, Row] = {}
    for where, line, values in table.rows:
        value = values.get(key, "").strip()
        if value in rows:
            report.warn(SOURCE, shown, f"duplicate key {value!r}; the first row is kept", row=line)
            continue
        rows[value] = (where, line, values)
    return rows


# --- one record ----------------------------------------------------------------------------------------------


def _record(release: Release, image: str, spec: Mapping, plan: Plan, row: Row | None, report: StageReport
            ) -> SourceRecord | None:
    shown = release.shown(image)
    stem = PurePosixPath(image).stem
    document, problem = _annotation(release, stem, spec.annotation, plan)
    name, rejection = _class_name(stem, spec, plan, row, document, problem)
    if name is None:
        report.reject(SOURCE, shown, rejection)
        return None
    if problem:
        report.warn(SOURCE, shown, problem)
    patient, sex, age = _person(row, plan, report)
    return SourceRecord(
        source=SOURCE,
        image_key=stem,
        patient_id=patient or stem,
        modality="X-ray",
        region=spec.region,
        view=spec.view,
        path=image,
        findings=(Finding(name),),
        sex=sex,
        age=age,
    )


def _annotation(release: Release, stem: str, template: str | None, plan: Plan) -> tuple[Any, str | None]:
    """The JSON paired with the image, or None and why not (None, None when the mapping names no JSON)."""
    if not template:
        return None, None
    if "{stem}" in template:
        rel = template.format(stem=stem)
    elif stem in plan.annotations:
        rel = plan.annotations[stem]
    else:
        return None, f"no annotation JSON {template} with stem {stem!r}"
    shown = release.shown(rel)
    escape = release.problem(rel)
    if escape is not None:
        return None, f"annotation JSON {shown}: {escape}: refused, not read"
    if not release.is_file(rel):
        return None, f"no annotation JSON {shown}"
    try:
        return json.loads(release.read_bytes(rel).decode("utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"annotation JSON {shown} does not parse: {exc}"


def _class_name(stem: str, spec: Mapping, plan: Plan, row: Row | None, document: Any, problem: str | None
                ) -> tuple[str | None, str]:
    """(class name, "") or (None, why the image has no usable class)."""
    if spec.class_from == "metadata":
        if row is None:
            return None, f"no class: no metadata row for {stem!r}"
        column = plan.columns["class"]
        raw: Any = row[2].get(column, "")
        where = f"metadata column {column!r}"
    else:
        if document is None:
            return None, f"no class: {problem}"
        key = spec.class_key[0]
        raw = _dotted(document, key)
        if raw is None:
            return None, f"no class: annotation JSON has no {key!r}"
        where = f"annotation key {key!r}"
    if str(raw).strip() == "":
        return None, f"no class: {where} is empty"
    name = spec.classes.get(_fold(raw))
    if name is None:
        return None, f"unknown class value {raw!r} in {where} (not in `classes` of {CONFIG})"
    return name, ""


def _dotted(document: Any, key: str) -> Any:
    """document["a"]["b"] for key "a.b"; None when any step is missing."""
    for part in key.split("."):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def _person(row: Row | None, plan: Plan, report: StageReport) -> tuple[str | None, str | None, int | None]:
    """Patient id, sex and age from the metadata row; a value it cannot read is warned and left empty."""
    if row is None:
        return None, None, None
    shown, line, values = row

    def value(role: str) -> str:
        column = plan.columns.get(role)
        return values.get(column, "").strip() if column else ""

    sex = sex_code(value("sex"))
    if sex is None and value("sex"):
        report.warn(SOURCE, shown, f"unknown sex value {value('sex')!r}", row=line)
    return value("patient") or None, sex, _age(value("age"), shown, line, report)


def _age(text: str, shown: str, line: int, report: StageReport) -> int | None:
    if not text:
        return None
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        report.warn(SOURCE, shown, f"age {text!r} is not a number", row=line)
        return None
