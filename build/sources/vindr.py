"""Reader of the VinDr-SpineXR release (docs/sources.md §4).

One record per image_id of annotations/train.csv and annotations/test.csv, with one finding per box (per
row: the multi-lesion rule `most_boxes` counts them; `No finding` once), the strings as written (the label
map judges them).
Region, view, sex and age come from four DICOM header tags. The reader opens no image file: it yields them
unknown, and `header_facts` fills them in inside the ingest worker that parses the file for its pixels
anyway, so each file is read once (a file that cannot be parsed is rejected there with the reason). An
image that resolves outside the source folder (a symlink) is rejected before anything opens it. A box of
zero width or height loses only the box (warned): the image and its lesion type stay.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pydicom.config
from pydicom.dataset import Dataset

from build.records import Finding, SourceRecord
from build.report import StageReport
from build.sources.common import read_csv_rows, referenced_file, sex_code
from build.sources.release import Release, locate

SOURCE = "vindr"
MARKER = "annotations/train.csv"  # with train_images/ beside it: the release's signature
SPLITS = ("train", "test")
COLUMNS = ("study_id", "series_id", "image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax")
NO_FINDING = "No finding"
LESION_TYPES = frozenset({
    "Osteophytes", "Disc space narrowing", "Surgical implant", "Foraminal stenosis",
    "Spondylolysthesis",  # sic: the release's spelling, kept for the label map
    "Vertebral collapse", "Other lesions", NO_FINDING,
})
MIN_BOX = 1e-3  # px: narrower or lower boxes are degenerate (the official loader's threshold)
DESCRIBE = "annotations/train.csv beside train_images/"
HEX_ID = re.compile(r"[0-9a-f]{32}")
UNKNOWN = "unknown"
# BodyPartExamined / ViewPosition, upper-cased with everything but letters and digits removed
REGIONS = {
    "CSPINE": "cervical", "CERVICAL": "cervical", "NECK": "cervical",
    "TSPINE": "thoracic", "THORACIC": "thoracic",
    "LSPINE": "lumbar", "LUMBAR": "lumbar", "LSSPINE": "lumbar",
}
VIEWS = {"AP": "AP", "PA": "PA", "LL": "lateral", "RL": "lateral", "LAT": "lateral", "LATERAL": "lateral"}


class Header(NamedTuple):
    """The only header facts that may leave the file: none of them identifies a patient."""

    region: str = UNKNOWN
    view: str = UNKNOWN
    sex: str | None = None
    age: int | None = None


@dataclass
class _Image:
    """What the annotation rows say about one image_id."""

    split: str
    study_id: str
    lines: list[int] = field(default_factory=list)
    rads: dict[str, set[str]] = field(default_factory=dict)  # lesion_type -> rad_ids
    boxes: dict[str, int] = field(default_factory=dict)  # lesion_type -> accepted rows (boxes)


def signature(release: Release) -> bool:
    return release.is_file(MARKER) and release.is_dir("train_images")


def read_release(folder: Path, report: StageReport) -> Iterator[SourceRecord]:
    """Records of the release found inside `folder` (see `read`)."""
    return read(locate(folder, SOURCE, signature, DESCRIBE, report), report)


def read(release: Release, report: StageReport) -> Iterator[SourceRecord]:
    """Records of the release, sorted by image_id."""
    images = _annotated_images(release, report)
    for image_id in sorted(images):
        image = images[image_id]
        csv_name = f"annotations/{image.split}.csv"
        path = f"{image.split}_images/{image_id}.dicom"
        if not referenced_file(release, path, report, SOURCE, csv_name, image.lines):
            continue
        _warn_contradiction(image_id, image, release.shown(csv_name), report)
        yield SourceRecord(
            source=SOURCE,
            image_key=image_id,
            patient_id=image.study_id,
            modality="X-ray",
            region=UNKNOWN,  # until header_facts
            view=UNKNOWN,
            path=path,
            findings=tuple(Finding(label) for label in sorted(image.rads)
                           for _ in range(1 if label == NO_FINDING else max(1, image.boxes.get(label, 0)))),
        )


def _annotated_images(release: Release, report: StageReport) -> dict[str, _Image]:
    """image_id -> its accepted rows; a rejected row costs only itself (the image keeps its other rows)."""
    images: dict[str, _Image] = {}
    for split in SPLITS:
        rel = f"annotations/{split}.csv"
        shown = release.shown(rel)
        first_lines: dict[tuple[str, ...], int] = {}
        for line, row in read_csv_rows(release, rel, COLUMNS, report, SOURCE):
            image = images.get(row["image_id"])
            problem = _row_problem(row)
            listed_elsewhere = image is not None and (image.split, image.study_id) != (split, row["study_id"])
            if problem is None and listed_elsewhere:
                problem = f"image_id already in annotations/{image.split}.csv with study_id {image.study_id}"
            if problem is not None:
                report.reject(SOURCE, shown, problem, row=line)
                continue
            degenerate = _degenerate(row) if row["lesion_type"] != NO_FINDING else None
            if degenerate:
                report.warn(SOURCE, shown, f"{degenerate}: box dropped, the image keeps its label", row=line)
            first = first_lines.setdefault(tuple(row[name].strip() for name in COLUMNS), line)
            if first != line:
                report.warn(SOURCE, shown, f"duplicate of line {first}; kept one", row=line)
                continue
            if image is None:
                image = images[row["image_id"]] = _Image(split, row["study_id"])
            lesion = row["lesion_type"]
            if lesion not in LESION_TYPES:
                report.warn(SOURCE, shown, f"unknown lesion_type {lesion!r}, kept as written", row=line)
            image.lines.append(line)
            image.rads.setdefault(lesion, set()).add(row["rad_id"])
            if not degenerate:  # a dropped box keeps its label (once) but is not counted by `most_boxes`
                image.boxes[lesion] = image.boxes.get(lesion, 0) + 1
    return images


def _row_problem(row: dict[str, str]) -> str | None:
    """Why a row cannot be used, or None.

    Ids must be 32-char lowercase hex (rejected, not warned): study_id is published as patient_id and
    image_id names the file and the image, so anything else is a misaligned row or a non-anonymised id,
    and ids differing only in case would collide once slugged into image ids.
    """
    for name in ("study_id", "image_id"):
        if not HEX_ID.fullmatch(row[name]):
            return f"{name} {row[name]!r} is not a 32-char lowercase hex id"
    if not row["lesion_type"]:
        return "empty lesion_type"
    if row["lesion_type"] == NO_FINDING:
        return None  # its box fields are empty in the release, and unused
    return _box_problem(row)


def _box(row: dict[str, str]) -> dict[str, str]:
    return {name: row[name] for name in ("xmin", "ymin", "xmax", "ymax")}


def _box_problem(row: dict[str, str]) -> str | None:
    """Why a lesion row is unusable: box fields that are not numbers mean a misaligned or broken row."""
    try:
        values = [float(value) for value in _box(row).values()]
    except ValueError:
        return f"non-numeric box {_box(row)}"
    if not all(math.isfinite(value) for value in values):
        return f"non-finite box {_box(row)}"
    return None


def _degenerate(row: dict[str, str]) -> str | None:
    """A box under MIN_BOX px wide or high (the official loader drops those and keeps the image), or None.
    The build uses the lesion type, not the box, so only the box is lost."""
    xmin, ymin, xmax, ymax = (float(value) for value in _box(row).values())
    if xmax - xmin < MIN_BOX or ymax - ymin < MIN_BOX:
        return f"degenerate box {_box(row)}"
    return None


def _warn_contradiction(image_id: str, image: _Image, shown: str, report: StageReport) -> None:
    """'No finding' next to a lesion on one image: both findings stay, the disagreement is reported."""
    lesion_rads = set().union(*(rads for lesion, rads in image.rads.items() if lesion != NO_FINDING))
    if NO_FINDING in image.rads and lesion_rads:
        healthy_rads = ", ".join(sorted(image.rads[NO_FINDING]))
        report.warn(SOURCE, shown, f"image {image_id}: '{NO_FINDING}' by {healthy_rads} and lesions by "
                                   f"{', '.join(sorted(lesion_rads))}; kept both")


def header_facts(dataset: Dataset) -> dict[str, Any]:
    """Region, view, sex and age from a parsed DICOM, as SourceRecord fields; a tag that is missing or
    cannot be converted leaves its fact unknown."""
    with pydicom.config.disable_value_validation():  # 'L-SPINE' and the like are expected, not news
        return Header(
            region=REGIONS.get(_token(_tag(dataset, "BodyPartExamined")), UNKNOWN),
            view=VIEWS.get(_token(_tag(dataset, "ViewPosition")), UNKNOWN),
            sex=sex_code(_tag(dataset, "PatientSex")),
            age=_age(_tag(dataset, "PatientAge")),
        )._asdict()


def _tag(dataset: Dataset, keyword: str) -> Any:
    try:
        return dataset.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value is an unknown fact, never a lost image
        return None


def _token(value: Any) -> str:
    return re.sub(r"[^A-Z0-9]", "", str(value or "").upper())


def _age(value: Any) -> int | None:
    """DICOM age string in years ('056Y' -> 56); ages in months, weeks or days are not years: None."""
    match = re.fullmatch(r"(\d{1,3})Y", str(value or "").strip().upper())
    return int(match.group(1)) if match else None
