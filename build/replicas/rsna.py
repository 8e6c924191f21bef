"""RSNA 2024 lumbar replica: the Kaggle CSVs and one MR DICOM per slice under train_images/.

Copies the competition layout (docs/sources.md section 3). Like the real data, each study has about a dozen
annotated slices: all five canal levels on one mid-sagittal T2 slice, foramina on one or two Sagittal T1
slices per side, subarticular recesses on Axial T2 slices (left and right usually on the same one), plus
unannotated neighbours whose numeric order matters (`10.dcm` after `9.dcm`). Planted: empty grades for
annotated levels, a study with two axial series, a truncated DICOM and an HTML page named `.dcm`, both
referenced by the coordinates CSV so the pipeline meets them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import MRImageStorage

from build.replicas.phantom import (LEVELS, Job, Spine, axial_geometry, axial_scene, build_spine, canal_point,
                                    count, dicom_fields, edge_case, foramen_point, pick, render, rng_for,
                                    sagittal_scene, to_uint, write_csv, write_dicom)

SOURCE = "rsna"
ROOT = "rsna-2024-lumbar-spine-degenerative-classification"
PAPER_STUDIES = 1975
# train.csv column prefix, coordinates-CSV condition, SpineBench disease
CONDITIONS = (
    ("spinal_canal_stenosis", "Spinal Canal Stenosis", "Spinal canal stenosis"),
    ("left_neural_foraminal_narrowing", "Left Neural Foraminal Narrowing", "Foraminal stenosis"),
    ("right_neural_foraminal_narrowing", "Right Neural Foraminal Narrowing", "Foraminal stenosis"),
    ("left_subarticular_stenosis", "Left Subarticular Stenosis", "Subarticular stenosis"),
    ("right_subarticular_stenosis", "Right Subarticular Stenosis", "Subarticular stenosis"),
)
CANAL, LEFT_FORAMEN, RIGHT_FORAMEN, LEFT_RECESS, RIGHT_RECESS = range(5)
GRADES = ("Normal/Mild", "Moderate", "Severe")
GRADE_WEIGHTS = ((0.9, 0.07, 0.03), (0.85, 0.1, 0.05), (0.75, 0.16, 0.09), (0.6, 0.25, 0.15), (0.7, 0.2, 0.1))
PINCH = {"Normal/Mild": (0.03, 0.25), "Moderate": (0.45, 0.6), "Severe": (0.72, 0.9)}  # drawn narrowing
COLUMNS = ("study_id", *(f"{c[0]}_{level.lower().replace('/', '_')}" for c in CONDITIONS for level in LEVELS))
DESCRIPTION_HEADER = ("study_id", "series_id", "series_description")
NOT_DICOM = b"<!DOCTYPE html><html><body><h1>403 Forbidden</h1></body></html>\n"


@dataclass
class Slice:
    """One planned DICOM: what to draw, where it sits, and which condition levels are annotated on it."""

    instance: int
    position: tuple[float, float, float]
    recipe: tuple  # ("sagittal", spine, weighting, kind, pinch) | ("axial", geo, at_disc, canal, left, right)
    marks: list[tuple[int, int, float, float]] = field(default_factory=list)  # condition, level, x, y
    broken: str = ""  # "" | truncated_dicom | not_dicom


@dataclass
class Series:
    series_id: int
    description: str
    slices: list[Slice]
    tags: dict  # tags shared by every slice of the series
    peak: int  # brightest stored value


def plant(root: Path, seed: int, scale: float) -> tuple[list[dict], list[dict], list[Job]]:
    """Write the five CSVs now; return manifest images, edge cases and one DICOM job per slice."""
    rng = rng_for(seed, SOURCE)
    n = count(PAPER_STUDIES, scale, 2)
    study_ids = sorted(unique_ints(rng, n + 1, 4_000_000, 4_290_000_000))
    test_id = study_ids.pop(int(rng.integers(n + 1)))
    series_ids = iter(unique_ints(rng, 5 * (n + 1), 1_000_000, 4_290_000_000))
    two_axials = {n - 1} | {k for k in range(n - 1) if rng.random() < 0.1}
    studies = []
    for k, study in enumerate(study_ids):
        grades = [[pick(rng, GRADES, GRADE_WEIGHTS[level]) for level in range(5)] for _ in CONDITIONS]
        studies.append((study, grades, plan_study(rng, study, series_ids, grades, k in two_axials, k == 0)))
    _break(studies[0][2], "Axial T2", "truncated_dicom")
    _break(studies[1 % n][2], "Sagittal T1", "not_dicom")
    blanks = _blank_grades(rng, studies, max(1, round(n / 8)))
    test_series = plan_study(rng, test_id, series_ids, [[GRADES[0]] * 5 for _ in CONDITIONS], False, False)

    images, edges, jobs, coordinates, descriptions = [], [], [], [], []
    for study, grades, series_list in studies:
        for series in series_list:
            descriptions.append((study, series.series_id, series.description))
            for item in series.slices:
                key = f"{study}/{series.series_id}/{item.instance}"
                path = f"{ROOT}/train_images/{key}.dcm"
                jobs.append(_job(rng, root / path, study, series, item))
                for condition, level, x, y in item.marks:
                    coordinates.append((study, series.series_id, item.instance, CONDITIONS[condition][1],
                                        LEVELS[level], f"{x:.6f}", f"{y:.6f}"))
                    if (study, condition, level) in blanks:
                        column = COLUMNS[1 + 5 * condition + level]
                        edges.append(edge_case(SOURCE, f"{ROOT}/train.csv", "empty_grade", "warn", key,
                                               f"study {study}: {column} is empty"))
                if item.broken:
                    edges.append(edge_case(SOURCE, path, item.broken, "reject", key,
                                           "annotated slice whose file cannot be decoded"))
                elif item.marks:
                    images.append(_entry(path, key, study, series, item, grades, blanks))
        if sum(series.description == "Axial T2" for series in series_list) > 1:
            edges.append(edge_case(SOURCE, f"{ROOT}/train_images/{study}", "multiple_axial_series", "accept",
                                   detail="two Axial T2 series"))
    study, _, series_list = studies[0]
    axial = next(series for series in series_list if series.description == "Axial T2")
    edges.append(edge_case(SOURCE, f"{ROOT}/train_images/{study}/{axial.series_id}",
                           "unpadded_instance_numbers", "accept",
                           detail=f"instances 1..{len(axial.slices)}: sort numerically"))
    for series in test_series:
        for item in series.slices:
            path = root / ROOT / "test_images" / str(test_id) / str(series.series_id) / f"{item.instance}.dcm"
            jobs.append(_job(rng, path, test_id, series, item))

    base = root / ROOT
    write_csv(base / "train.csv", COLUMNS, [
        (study, *("" if (study, c, lv) in blanks else grades[c][lv] for c in range(5) for lv in range(5)))
        for study, grades, _ in studies])
    write_csv(base / "train_label_coordinates.csv",
              ("study_id", "series_id", "instance_number", "condition", "level", "x", "y"), coordinates)
    write_csv(base / "train_series_descriptions.csv", DESCRIPTION_HEADER, descriptions)
    write_csv(base / "test_series_descriptions.csv", DESCRIPTION_HEADER,
              [(test_id, series.series_id, series.description) for series in test_series])
    write_csv(base / "sample_submission.csv", ("row_id", "normal_mild", "moderate", "severe"),
              [(f"{test_id}_{column}", "0.333333", "0.333333", "0.333333") for column in COLUMNS[1:]])
    return images, edges, jobs


def unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """n distinct random ids (drawn, not a range, so they look like the release's)."""
    found: dict[int, None] = {}
    while len(found) < n:
        found.setdefault(int(rng.integers(low, high)), None)
    return list(found)


def plan_study(rng: np.random.Generator, study: int, series_ids: Iterator[int], grades: list[list[str]],
               two_axials: bool, first: bool) -> list[Series]:
    """Sagittal T1, Sagittal T2/STIR and one or two Axial T2 series sharing one drawn anatomy."""
    pinch = [[rng.uniform(*PINCH[grade]) for grade in row] for row in grades]
    size = int(rng.integers(144, 177))
    spine = build_spine(rng, size, size, "lumbar", "lateral", (), (rng.uniform(-0.06, -0.02), 0.0, 0.0))
    series = [_sagittal(rng, study, next(series_ids), description, spine, pinch)
              for description in ("Sagittal T1", "Sagittal T2/STIR")]
    cut = int(rng.integers(2, 4))
    for j, levels in enumerate([range(cut), range(cut, 5)] if two_axials else [range(5)]):
        series.append(_axial(rng, study, next(series_ids), list(levels), pinch, first and j == 0))
    return series


def _series_tags(rng: np.random.Generator, study: int, series_id: int, size: int, orientation: list[int],
                 peak: int) -> dict:
    tags = {
        "SOPClassUID": MRImageStorage, "Modality": "MR", "PatientID": str(study),
        "StudyInstanceUID": str(study), "SeriesInstanceUID": f"{study}.{series_id}",
        "PhotometricInterpretation": "MONOCHROME2", "BitsStored": pick(rng, (12, 16)),
        "PixelSpacing": [f"{300 / size:.6f}"] * 2, "SliceThickness": "4.0",
        "ImageOrientationPatient": orientation,
    }
    slope, intercept = 1.0, 0.0
    if rng.random() < 0.25:
        slope, intercept = pick(rng, (0.5, 2.0)), pick(rng, (0.0, -100.0))
        tags |= {"RescaleSlope": f"{slope:g}", "RescaleIntercept": f"{intercept:g}"}
    if rng.random() < 0.9:  # the window is in rescaled units, as the standard says
        tags |= {"WindowCenter": str(int(peak * slope * rng.uniform(0.4, 0.5) + intercept)),
                 "WindowWidth": str(int(peak * slope * rng.uniform(0.8, 1.0)))}
    return tags


def _start(rng: np.random.Generator, forced: bool = False) -> int:
    """First instance number: usually 1, sometimes later (numbers are never zero-padded)."""
    return 1 if forced or rng.random() < 0.6 else int(rng.integers(2, 41))


def _sagittal(rng: np.random.Generator, study: int, series_id: int, description: str, spine: Spine,
              pinch: list[list[float]]) -> Series:
    """Slices left of mid show the left foramina; T1 carries the foraminal marks, T2 the canal marks."""
    t1 = description == "Sagittal T1"
    n = int(rng.integers(8, 10) if t1 else rng.integers(5, 8))
    start, peak = _start(rng), int(rng.integers(700, 3000))
    mid, weighting = n // 2, "T1" if t1 else "T2"
    slices = []
    for i in range(n):
        d = i - mid
        kind = ("mid", "para", "foramen", "foramen" if t1 else "lateral")[abs(d)] if abs(d) < 4 else "lateral"
        side = LEFT_FORAMEN if d > 0 else RIGHT_FORAMEN
        levels = pinch[CANAL] if kind in ("mid", "para") else pinch[side] if kind == "foramen" else [0.0] * 5
        recipe = ("sagittal", spine, weighting, kind, tuple(levels))
        slices.append(Slice(start + i, (d * 4.5, -150.0, 150.0), recipe))
    if t1:
        for side, sign in ((LEFT_FORAMEN, 1), (RIGHT_FORAMEN, -1)):
            candidates = [slices[mid + sign * d] for d in (2, 3) if 0 <= mid + sign * d < n]
            cut = int(rng.integers(2, 4)) if len(candidates) > 1 and rng.random() < 0.85 else 5
            for level in range(5):
                x, y = foramen_point(spine, level)
                candidates[level >= cut].marks.append((side, level, x, y))
    else:
        slices[mid].marks.extend((CANAL, level, *canal_point(spine, level)) for level in range(5))
    orientation = [0, 1, 0, 0, 0, -1]
    return Series(series_id, description, slices,
                  _series_tags(rng, study, series_id, spine.width, orientation, peak), peak)


def _axial(rng: np.random.Generator, study: int, series_id: int, levels: list[int], pinch: list[list[float]],
           forced_start: bool) -> Series:
    """A body slice, then per level one disc slice (or two, when left and right were marked apart)."""
    size = int(rng.integers(128, 161))
    geo = axial_geometry(rng, size, size)
    body = ("axial", geo, False, 0.0, 0.0, 0.0)
    plan: list[tuple[tuple, list]] = [(body, [])]
    for level in levels:
        disc = ("axial", geo, True, *(pinch[c][level] for c in (CANAL, LEFT_RECESS, RIGHT_RECESS)))
        left = (LEFT_RECESS, level, *geo.recess(1))
        right = (RIGHT_RECESS, level, *geo.recess(-1))
        if rng.random() < 0.55:  # left and right on one slice, usually
            plan.append((disc, [left, right]))
        else:
            first, second = (left, right) if rng.random() < 0.5 else (right, left)
            plan += [(disc, [first]), (disc, [second])]
        if level != levels[-1]:
            plan.append((body, []))
    start, peak = _start(rng, forced_start), int(rng.integers(700, 3000))
    slices = [Slice(start + i, (-150.0, -150.0, 100.0 - 4.0 * i), recipe, marks)
              for i, (recipe, marks) in enumerate(plan)]
    orientation = [1, 0, 0, 0, 1, 0]
    tags = _series_tags(rng, study, series_id, size, orientation, peak)
    return Series(series_id, "Axial T2", slices, tags, peak)


def _break(series_list: list[Series], description: str, kind: str) -> None:
    """Spoil the last annotated slice of the first series of that description."""
    series = next(s for s in series_list if s.description == description)
    [s for s in series.slices if s.marks][-1].broken = kind


def _blank_grades(rng: np.random.Generator, studies: list, m: int) -> set[tuple[int, int, int]]:
    """(study, condition, level) whose grade train.csv leaves empty though the level is annotated."""
    marked = sorted({(study, condition, level) for study, _, series_list in studies for series in series_list
                     for item in series.slices if not item.broken for condition, level, _, _ in item.marks})
    return {marked[i] for i in rng.choice(len(marked), m, replace=False)}


def _job(rng: np.random.Generator, path: Path, study: int, series: Series, item: Slice) -> Job:
    tags = {**series.tags, "SOPInstanceUID": f"{study}.{series.series_id}.{item.instance}",
            "InstanceNumber": item.instance, "ImagePositionPatient": [f"{v:.2f}" for v in item.position]}
    return (mr_slice, (path, item.recipe, int(rng.integers(2**63)), tags, series.peak, item.broken))


def _entry(path: str, key: str, study: int, series: Series, item: Slice, grades: list[list[str]],
           blanks: set) -> dict:
    levels: dict[str, list[dict]] = {}
    for condition, level, _, _ in sorted(item.marks, key=lambda m: (m[1], m[0])):
        blank = (study, condition, level) in blanks
        levels.setdefault(CONDITIONS[condition][2], []).append(
            {"level": LEVELS[level], "severity": None if blank else grades[condition][level],
             "label": CONDITIONS[condition][1]})
    return {
        "source": SOURCE, "path": path, "image_key": key, "patient_id": str(study), "modality": "MRI",
        "region": "lumbar", "view": series.description, "sex": None, "age": None, "diseases": sorted(levels),
        "raw_labels": sorted({CONDITIONS[c][1] for c, _, _, _ in item.marks}), "levels": levels,
        **dicom_fields(series.tags),
    }


def mr_slice(path: Path, recipe: tuple, seed: int, tags: dict, peak: int, broken: str) -> None:
    """Draw and write one slice; a planted not_dicom slice becomes an error page with a .dcm name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if broken == "not_dicom":
        path.write_bytes(NOT_DICOM)
        return
    kind, *args = recipe
    scene = sagittal_scene(*args) if kind == "sagittal" else axial_scene(*args)
    write_dicom(path, to_uint(render(scene, np.random.default_rng(seed)), 0, peak), tags,
                truncate=broken == "truncated_dicom")
