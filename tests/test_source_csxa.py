"""CSXA reader on tiny hand-built trees: the placeholder layout of configs/csxa.yaml and another mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from build import config
from build.records import Finding, SourceRecord
from build.report import StageReport
from build.sources import csxa
from build.sources.release import SourceError
from reader_battery import ReaderBattery

HEADER = "image_id,patient_id,gender,age,curvature\n"


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 120).save(path, format="PNG")


def labelme(path: Path, **extra) -> None:
    """A LabelMe-like keypoint file (the placeholder guess), with extra top-level keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = [{"label": str(i), "points": [[10.0 + i, 20.0 + i]], "shape_type": "point"} for i in range(23)]
    path.write_text(json.dumps({"shapes": shapes, **extra}), encoding="utf-8")


def default_release(root: Path, metadata: str) -> None:
    """The placeholder layout of configs/csxa.yaml: metadata.csv, images/*.png, annotations/<stem>.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text(HEADER + metadata, encoding="utf-8")
    for line in metadata.splitlines():
        stem = line.split(",")[0]
        png(root / "images" / f"{stem}.png")
        labelme(root / "annotations" / f"{stem}.json")


def read(folder: Path, mapping: dict | None = None) -> tuple[list[SourceRecord], StageReport]:
    report = StageReport("ingest")
    return list(csxa.read_release(folder, report, mapping)), report


def issues(found) -> list[tuple[str, int | None, str]]:
    return [(issue.path, issue.row, issue.reason) for issue in found]


def record(stem: str, path: str, label: str, patient: str | None = None, sex: str | None = None,
           age: int | None = None) -> SourceRecord:
    return SourceRecord(
        source="csxa", image_key=stem, patient_id=patient or stem, modality="X-ray", region="cervical",
        view="lateral", path=path, findings=(Finding(label),), sex=sex, age=age,
    )


def test_placeholder_layout_takes_class_sex_age_and_patient_from_metadata(tmp_path):
    default_release(tmp_path / "download" / "CSXA", (
        "c002,P17,male,51,S-shaped\n"
        "c001,P09,Female,34,Lordosis\n"
        "c003,,M,62.0,Straight\n"
        "c004,P20,,,Kyphosis\n"
    ))
    records, report = read(tmp_path)
    images = "images"  # relative to the release root (download/CSXA)
    assert records == [
        record("c001", f"{images}/c001.png", "lordosis", "P09", "F", 34),
        record("c002", f"{images}/c002.png", "sigmoid", "P17", "M", 51),
        record("c003", f"{images}/c003.png", "straight", None, "M", 62),
        record("c004", f"{images}/c004.png", "kyphosis", "P20"),
    ]
    assert (report.rejected, report.warnings) == ([], [])


def test_unknown_or_missing_class_rejects_the_image_with_the_value(tmp_path):
    default_release(tmp_path, (
        "c001,P1,F,30,Reverse lordosis\n"
        "c002,P2,F,31,\n"
        "c003,P3,F,32,Kyphosis\n"
    ))
    png(tmp_path / "images" / "c009.png")
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == ["c003"]
    assert issues(report.rejected) == [
        ("images/c001.png", None, "unknown class value 'Reverse lordosis' in metadata column 'curvature'"
                                  " (not in `classes` of configs/csxa.yaml)"),
        ("images/c002.png", None, "no class: metadata column 'curvature' is empty"),
        ("images/c009.png", None, "no class: no metadata row for 'c009'"),
    ]
    assert report.warnings == []


def test_broken_json_is_warned_and_the_image_kept_when_the_class_is_in_metadata(tmp_path):
    default_release(tmp_path, "c001,P1,F,30,Lordosis\n")
    (tmp_path / "annotations" / "c001.json").write_text("{\"shapes\": [", encoding="utf-8")
    records, report = read(tmp_path)
    assert [(r.image_key, r.findings) for r in records] == [("c001", (Finding("lordosis"),))]
    assert [(i.path, i.reason.split(":")[0]) for i in report.warnings] == [
        ("images/c001.png", "annotation JSON annotations/c001.json does not parse")
    ]


def test_missing_json_is_warned_when_the_class_is_in_metadata(tmp_path):
    default_release(tmp_path, "c001,P1,F,30,Lordosis\n")
    (tmp_path / "annotations" / "c001.json").unlink()
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == ["c001"]
    assert issues(report.warnings) == [("images/c001.png", None, "no annotation JSON **/*.json with stem 'c001'")]


def test_metadata_oddities_are_warned(tmp_path):
    default_release(tmp_path, (
        "c001,P1,X,old,Lordosis\n"
        "c001,P1,F,30,Kyphosis\n"
        "c404,P4,F,30,Kyphosis\n"
    ))
    (tmp_path / "images" / "c404.png").unlink()
    records, report = read(tmp_path)
    assert records == [record("c001", "images/c001.png", "lordosis", "P1")]
    assert issues(report.warnings) == [
        ("metadata.csv", 3, "duplicate key 'c001'; the first row is kept"),
        ("metadata.csv", 4, "metadata row for 'c404' matches no image"),
        ("metadata.csv", 2, "unknown sex value 'X'"),
        ("metadata.csv", 2, "age 'old' is not a number"),
    ]


def test_metadata_key_may_hold_the_file_name(tmp_path):
    default_release(tmp_path, "c001,P1,F,30,Lordosis\n")
    (tmp_path / "metadata.csv").write_text(HEADER + "c001.png,P1,F,30,Straight\n", encoding="utf-8")
    records, report = read(tmp_path)
    assert [r.findings for r in records] == [(Finding("straight"),)]
    assert report.warnings == []


def other_mapping() -> dict:
    """Another plausible layout: class as an integer code inside each JSON, images in subfolders."""
    return {
        "root_marker": "README.txt",
        "images": "png/**/*.png",
        "annotation": "json/{stem}_keypoints.json",
        "class_from": "annotation",
        "class_key": "flags.curvature",
        "classes": {0: "lordosis", 1: "straight", 2: "kyphosis", 3: "sigmoid"},
        "region": "cervical",
        "view": "lateral",
    }


def test_another_mapping_takes_the_class_from_the_json_paired_by_stem(tmp_path):
    root = tmp_path / "CSXA_v2"
    root.mkdir()
    (root / "README.txt").write_text("Cervical Spine X-ray Atlas\n")
    png(root / "png" / "a" / "x1.png")
    png(root / "png" / "b" / "x2.png")
    png(root / "png" / "b" / "x1.png")
    png(root / "png" / "b" / "x3.png")
    png(root / "png" / "b" / "x4.png")
    labelme(root / "json" / "x1_keypoints.json", flags={"curvature": 2})
    labelme(root / "json" / "x2_keypoints.json", flags={"curvature": 3})
    labelme(root / "json" / "x3_keypoints.json", flags={"other": 1})
    (root / "json" / "x4_keypoints.json").write_text("[not json", encoding="utf-8")
    labelme(root / "json" / "x5_keypoints.json", flags={"curvature": 0})
    records, report = read(tmp_path, other_mapping())
    assert records == [
        record("x1", "png/a/x1.png", "kyphosis"),
        record("x2", "png/b/x2.png", "sigmoid"),
    ]
    rejected = {i.path: i.reason for i in report.rejected}
    assert rejected.pop("CSXA_v2/png/b/x4.png").startswith(
        "no class: annotation JSON CSXA_v2/json/x4_keypoints.json does not parse: ")
    assert rejected == {
        "CSXA_v2/png/b/x1.png": "duplicate image stem 'x1' (first: CSXA_v2/png/a/x1.png)",
        "CSXA_v2/png/b/x3.png": "no class: annotation JSON has no 'flags.curvature'",
    }
    assert report.warnings == []


def test_missing_json_rejects_when_the_class_lives_there(tmp_path):
    (tmp_path / "README.txt").write_text("")
    png(tmp_path / "png" / "x1.png")
    records, report = read(tmp_path, other_mapping())
    assert records == []
    assert issues(report.rejected) == [
        ("png/x1.png", None, "no class: no annotation JSON json/x1_keypoints.json")
    ]


def test_a_folder_without_the_metadata_is_an_error(tmp_path):
    png(tmp_path / "images" / "c001.png")
    with pytest.raises(SourceError, match="csxa: release not found .*datasets.xlsx"):
        read(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_from": "filename"}, "class_from"),
        ({"images": None}, "images"),
        ({"metadata": None}, "metadata"),
        ({"annotation": "annotations/x.json"}, "annotation"),
    ],
)
def test_a_broken_mapping_stops_with_the_key_named(tmp_path, change, message):
    mapping = {**config.load("csxa"), **change}
    with pytest.raises(ValueError, match=message):
        read(tmp_path, mapping)


class TestBattery(ReaderBattery):
    SOURCE = csxa.SOURCE
    TABLE = "**/metadata.csv"
