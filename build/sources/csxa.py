"""Reader of CSXA, the Cervical Spine X-ray Atlas (SOURCES.md §2), driven by configs/csxa.yaml.

The real layout is unknown, so nothing here names a CSXA file: the mapping says where the root, the
images, the keypoint JSONs and the metadata CSV are, where the curvature class lives and how raw values
become class names. One record per image, keyed by its stem, which also pairs it with its JSON and its
metadata row. An image without a known class is rejected; everything else missing only costs a field.
A mapping that cannot work (a missing key, an unknown `class_from`) raises ValueError at once: it is a
configuration error, and reporting it on every image would hide it.
Files that resolve outside the source folder (symlinks) are refused with a reason and never opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build import config
from build.records import Finding, SourceRecord
from build.report import StageReport
from build.sources.common import outside, read_csv_rows, relpath, release_root, sex_code

SOURCE = "csxa"
CLASS_FROM = ("metadata", "annotation")
REQUIRED = ("root_marker", "images", "class_from", "class_key", "classes", "region", "view")

Row = tuple[str, int, dict[str, str]]  # (metadata CSV as shown in reports, line, values by column)


@dataclass(frozen=True)
class Mapping:
    """configs/csxa.yaml, checked; `classes` keys as strings so YAML integers match JSON or CSV values."""

    root_marker: str
    images: str
    annotation: str | None
    metadata: dict[str, str | None]
    class_from: str
    class_key: str
    classes: dict[str, str]
    region: str
    view: str

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Mapping:
        missing = [key for key in REQUIRED if not raw.get(key)]
        metadata = raw.get("metadata") or {}
        if raw.get("class_from") == "metadata" and not metadata.get("file"):
            missing.append("metadata.file (class_from: metadata)")
        if metadata.get("file") and not metadata.get("key"):
            missing.append("metadata.key")
        if missing:
            raise ValueError(f"CSXA mapping lacks {', '.join(missing)} (see configs/csxa.yaml)")
        if raw["class_from"] not in CLASS_FROM:
            raise ValueError(f"CSXA mapping: class_from must be one of {CLASS_FROM}, "
                             f"not {raw['class_from']!r}")
        annotation = raw.get("annotation")
        needed = raw["class_from"] == "annotation"
        if (annotation and "{stem}" not in annotation) or (needed and not annotation):
            raise ValueError("CSXA mapping: annotation must be a path template with {stem} "
                             "(required with class_from: annotation)")
        return cls(
            root_marker=raw["root_marker"], images=raw["images"], annotation=annotation, metadata=metadata,
            class_from=raw["class_from"], class_key=raw["class_key"],
            classes={str(value).strip(): name for value, name in raw["classes"].items()},
            region=raw["region"], view=raw["view"],
        )

    def metadata_columns(self) -> list[str]:
        """Columns the metadata CSV must have: every one the mapping names (a misnamed one is an error)."""
        columns = [self.metadata.get(key) for key in ("key", "patient", "sex", "age")]
        if self.class_from == "metadata":
            columns.append(self.class_key)
        return [column for column in columns if column]


def read_release(folder: Path, report: StageReport, mapping: dict[str, Any] | None = None
                 ) -> Iterator[SourceRecord]:
    """Records of the release inside `folder`, by image path; `mapping` replaces configs/csxa.yaml."""
    spec = Mapping.parse(config.load("csxa") if mapping is None else mapping)
    root = release_root(folder, spec.root_marker, report, SOURCE)
    if root is None:
        return
    images = _images(root, spec.images, folder, report)
    metadata = _metadata(root, spec, images, folder, report)
    for stem, image in images.items():
        record = _record(image, spec, metadata.get(stem) or metadata.get(image.name), root, folder, report)
        if record is not None:
            yield record


def _images(root: Path, pattern: str, folder: Path, report: StageReport) -> dict[str, Path]:
    """Image files by stem, in path order; a second file with a stem already seen is rejected, because the
    stem is the image's id and what pairs it with its JSON and metadata row. An image that leads outside
    the source folder (a symlink) is rejected and never opened."""
    images: dict[str, Path] = {}
    for path in sorted(root.glob(pattern)):
        if path.is_symlink() and not path.exists():
            report.reject(SOURCE, relpath(path, folder), "broken symlink (its target is missing or loops)")
            continue
        if not path.is_file():
            continue
        escape = outside(path, folder)
        if escape is not None:
            report.reject(SOURCE, relpath(path, folder), f"{escape}: image refused, not read")
            continue
        first = images.setdefault(path.stem, path)
        if first != path:
            report.reject(SOURCE, relpath(path, folder),
                          f"duplicate image stem {path.stem!r} (first: {relpath(first, folder)})")
    return images


def _metadata(root: Path, spec: Mapping, images: dict[str, Path], folder: Path, report: StageReport
              ) -> dict[str, Row]:
    """Metadata rows by key (an image stem or file name); warns on a repeated key, keeping the first row,
    and on rows that match no image."""
    if not spec.metadata.get("file"):
        return {}
    path = root / spec.metadata["file"]
    shown = relpath(path, folder)
    if not path.is_file():
        report.warn(SOURCE, shown, "metadata CSV not found")
        return {}
    rows: dict[str, Row] = {}
    for line, row in read_csv_rows(path, spec.metadata_columns(), report, SOURCE, base=folder):
        key = row[spec.metadata["key"]].strip()
        if key in rows:
            report.warn(SOURCE, shown, f"duplicate key {key!r}; the first row is kept", row=line)
            continue
        rows[key] = (shown, line, row)
    names = set(images) | {image.name for image in images.values()}
    for key, (_, line, _) in rows.items():
        if key not in names:
            report.warn(SOURCE, shown, f"metadata row for {key!r} matches no image", row=line)
    return rows


def _record(image: Path, spec: Mapping, row: Row | None, root: Path, folder: Path, report: StageReport
            ) -> SourceRecord | None:
    shown = relpath(image, folder)
    document, problem = _annotation(image.stem, spec.annotation, root, folder)
    name, rejection = _class_name(image.stem, spec, row, document, problem)
    if name is None:
        report.reject(SOURCE, shown, rejection)
        return None
    if problem:
        report.warn(SOURCE, shown, problem)
    patient, sex, age = _person(row, spec, report)
    return SourceRecord(
        source=SOURCE,
        image_key=image.stem,
        patient_id=patient or image.stem,
        modality="X-ray",
        region=spec.region,
        view=spec.view,
        path=shown,
        findings=(Finding(name),),
        sex=sex,
        age=age,
    )


def _annotation(stem: str, template: str | None, root: Path, folder: Path) -> tuple[Any, str | None]:
    """The JSON paired with the image, or None and why not (None, None when the mapping names no JSON)."""
    if not template:
        return None, None
    path = root / template.format(stem=stem)
    shown = relpath(path, folder)
    escape = outside(path, folder)
    if escape is not None:
        return None, f"annotation JSON {shown}: {escape}: refused, not read"
    if not path.is_file():
        return None, f"no annotation JSON {shown}"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"annotation JSON {shown} does not parse: {exc}"


def _class_name(stem: str, spec: Mapping, row: Row | None, document: Any, problem: str | None
                ) -> tuple[str | None, str]:
    """(class name, "") or (None, why the image has no usable class)."""
    if spec.class_from == "metadata":
        if row is None:
            return None, f"no class: no metadata row for {stem!r}"
        raw: Any = row[2][spec.class_key]
        where = f"metadata column {spec.class_key!r}"
    else:
        if document is None:
            return None, f"no class: {problem}"
        raw = _dotted(document, spec.class_key)
        if raw is None:
            return None, f"no class: annotation JSON has no {spec.class_key!r}"
        where = f"annotation key {spec.class_key!r}"
    if str(raw).strip() == "":
        return None, f"no class: {where} is empty"
    name = spec.classes.get(str(raw).strip())
    if name is None:
        return None, f"unknown class value {raw!r} in {where} (not in `classes` of configs/csxa.yaml)"
    return name, ""


def _dotted(document: Any, key: str) -> Any:
    """document["a"]["b"] for key "a.b"; None when any step is missing."""
    for part in key.split("."):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def _person(row: Row | None, spec: Mapping, report: StageReport) -> tuple[str | None, str | None, int | None]:
    """Patient id, sex and age from the metadata row; a value it cannot read is warned and left empty."""
    if row is None:
        return None, None, None
    shown, line, values = row

    def value(key: str) -> str:
        column = spec.metadata.get(key)
        return values[column].strip() if column else ""

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
