"""The RSNA 2024 reader on tiny release trees written here in the layout of docs/sources.md §3."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydicom.uid import MRImageStorage
from tiny_dicoms import write_tiny_dicom

from build.records import Finding, Point, SourceRecord
from build.report import StageReport
from build.sources import rsna
from build.sources.release import SourceError
from reader_battery import ReaderBattery

RELEASE = "rsna-2024-lumbar-spine-degenerative-classification"
SLUGS = ("spinal_canal_stenosis", "left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing",
         "left_subarticular_stenosis", "right_subarticular_stenosis")
GRADE_COLUMNS = [f"{c}_{level}" for c in SLUGS for level in ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")]
CANAL = "Spinal Canal Stenosis"
LEFT_NFN, RIGHT_NFN = "Left Neural Foraminal Narrowing", "Right Neural Foraminal Narrowing"
LEFT_SS, RIGHT_SS = "Left Subarticular Stenosis", "Right Subarticular Stenosis"
LEVELS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
NM = "Normal/Mild"

# numeric order only: study 4003253 < 38281420, series 702807833 < 1054713880, instance 2 < 10
COORDINATES = [
    *[(4003253, 702807833, 8, CANAL, level) for level in LEVELS],
    (4003253, 1054713880, 10, RIGHT_NFN, "L4/L5"),
    (4003253, 1054713880, 4, LEFT_NFN, "L4/L5"),
    (4003253, 2448190387, 10, LEFT_SS, "L4/L5"),
    (4003253, 2448190387, 2, RIGHT_SS, "L1/L2"),
    (4003253, 2448190387, 2, LEFT_SS, "L1/L2"),
    (4003253, 3486248476, 5, LEFT_SS, "L5/S1"),  # a second axial series in the same study
    (38281420, 132939515, 9, CANAL, "L3/L4"),
]
SERIES = [
    (4003253, 702807833, "Sagittal T2/STIR"),
    (4003253, 1054713880, "Sagittal T1"),
    (4003253, 2448190387, "Axial T2"),
    (4003253, 3486248476, "Axial T2"),
    (38281420, 132939515, "Sagittal T2/STIR"),
]
GRADES = {
    4003253: {"spinal_canal_stenosis_l4_l5": "Moderate", "left_subarticular_stenosis_l5_s1": "Severe",
              "right_subarticular_stenosis_l1_l2": ""},
    38281420: {"spinal_canal_stenosis_l3_l4": "Severe"},
}


def write_csv(path: Path, header: list[str], rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_dicom(path: Path, study: int, series: int, instance: int) -> None:
    """A 2x2 MR slice with the release's id tags; the reader must not need more than its existence."""
    write_tiny_dicom(path, MRImageStorage, f"1.2.3.{study}.{series}.{instance}", Modality="MR",
                     PatientID=str(study), StudyInstanceUID=str(study), SeriesInstanceUID=f"{study}.{series}",
                     InstanceNumber=instance)


def plant(folder: Path, coordinates: list = COORDINATES, grades: dict = GRADES, series: list = SERIES,
          nest: str = RELEASE, grade_columns: list[str] = GRADE_COLUMNS, missing: tuple = ()) -> Path:
    """Write a release under folder/nest; every slice of COORDINATES gets a .dcm unless in `missing`."""
    root = folder / nest
    write_csv(root / "train_label_coordinates.csv",
              ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"],
              [(*row, "1.5", "0.25") for row in coordinates])  # inside the 2x2 slice: points are checked
    write_csv(root / "train.csv", ["study_id", *grade_columns],
              [[study, *(grades[study].get(column, NM) for column in grade_columns)] for study in grades])
    write_csv(root / "train_series_descriptions.csv", ["study_id", "series_id", "series_description"], series)
    for study, series_id, instance, *_ in COORDINATES:
        path = root / "train_images" / str(study) / str(series_id) / f"{instance}.dcm"
        if (study, series_id, instance) not in missing and not path.exists():
            write_dicom(path, study, series_id, instance)
    write_csv(root / "test_series_descriptions.csv", ["study_id", "series_id", "series_description"], [])
    return root


def read(folder: Path) -> tuple[list[SourceRecord], StageReport]:
    report = StageReport("ingest")
    return list(rsna.read_release(folder, report)), report


def reasons(issues: list) -> list[str]:
    return [issue.reason for issue in issues]


def test_records_match_the_planted_release(tmp_path: Path) -> None:
    plant(tmp_path)
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == [
        "4003253/702807833/8", "4003253/1054713880/4", "4003253/1054713880/10", "4003253/2448190387/2",
        "4003253/2448190387/10", "4003253/3486248476/5", "38281420/132939515/9",
    ]
    canal = records[0]
    assert canal == SourceRecord(
        source="rsna", image_key="4003253/702807833/8", patient_id="4003253", modality="MRI", region="lumbar",
        view="Sagittal T2/STIR", path="train_images/4003253/702807833/8.dcm",
        findings=tuple(Finding(CANAL, level, "Moderate" if level == "L4/L5" else NM) for level in LEVELS),
        points=tuple(Point("train_label_coordinates.csv", line, 1.5, 0.25) for line in range(2, 7)),
    )
    assert [(r.view, r.findings) for r in records[1:]] == [
        ("Sagittal T1", (Finding(LEFT_NFN, "L4/L5", NM),)),
        ("Sagittal T1", (Finding(RIGHT_NFN, "L4/L5", NM),)),
        ("Axial T2", (Finding(LEFT_SS, "L1/L2", NM), Finding(RIGHT_SS, "L1/L2", None))),
        ("Axial T2", (Finding(LEFT_SS, "L4/L5", NM),)),
        ("Axial T2", (Finding(LEFT_SS, "L5/S1", "Severe"),)),
        ("Sagittal T2/STIR", (Finding(CANAL, "L3/L4", "Severe"),)),
    ]
    assert all((tmp_path / RELEASE / r.path).is_file() for r in records)
    assert not report.rejected
    [warning] = report.warnings  # the empty grade, named by study, condition and level
    assert (warning.path, warning.row) == (f"{RELEASE}/train.csv", 2)
    assert "4003253" in warning.reason and "Right Subarticular Stenosis L1/L2" in warning.reason


def test_grades_are_found_by_column_name_not_position(tmp_path: Path) -> None:
    plant(tmp_path, grade_columns=GRADE_COLUMNS[::-1])
    records, _ = read(tmp_path)
    assert records[0].findings[3] == Finding(CANAL, "L4/L5", "Moderate")
    assert records[-1].findings == (Finding(CANAL, "L3/L4", "Severe"),)


def test_root_nested_twice(tmp_path: Path) -> None:
    plant(tmp_path, nest=f"{RELEASE}/{RELEASE}")
    records, report = read(tmp_path)
    assert len(records) == 7 and not report.rejected
    assert records[0].path == "train_images/4003253/702807833/8.dcm"  # relative to the release root
    assert records[0].points[0].file == "train_label_coordinates.csv"


def test_missing_dicom_is_rejected_with_its_path(tmp_path: Path) -> None:
    plant(tmp_path, missing=((4003253, 2448190387, 2),))
    records, report = read(tmp_path)
    assert "4003253/2448190387/2" not in [r.image_key for r in records] and len(records) == 6
    [issue] = report.rejected
    assert issue.path == f"{RELEASE}/train_images/4003253/2448190387/2.dcm"
    assert issue.reason == "missing file, referenced by train_label_coordinates.csv line(s) 10, 11"


def test_bad_coordinate_rows_are_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    bad = [
        (4003253, 702807833, 8, "Spinal canal stenosis", "L1/L2"),  # wrong case: not a release string
        (4003253, 702807833, 8, CANAL, "L4-L5"),
        ("4003253x", 702807833, 8, CANAL, "L1/L2"),
        (4003253, 702807833, "8.0", CANAL, "L1/L2"),
    ]
    plant(tmp_path, coordinates=COORDINATES + bad)
    records, report = read(tmp_path)
    assert len(records) == 7 and records[0].findings[0] == Finding(CANAL, "L1/L2", NM)
    assert [(i.row, i.reason) for i in report.rejected] == [
        (14, "unknown condition 'Spinal canal stenosis'"),
        (15, "unknown level 'L4-L5'"),
        (16, "non-integer study_id '4003253x'"),
        (17, "non-integer instance_number '8.0'"),
    ]


def test_duplicate_coordinate_rows_keep_one_finding(tmp_path: Path) -> None:
    plant(tmp_path, coordinates=COORDINATES + [(38281420, 132939515, 9, CANAL, "L3/L4")])
    records, report = read(tmp_path)
    assert records[-1].findings == (Finding(CANAL, "L3/L4", "Severe"),)
    duplicate = [w for w in report.warnings if "duplicate" in w.reason]
    assert [(w.path, w.row) for w in duplicate] == [(f"{RELEASE}/train_label_coordinates.csv", 14)]


def test_study_missing_from_train_csv_keeps_records_without_severity(tmp_path: Path) -> None:
    plant(tmp_path, grades={4003253: GRADES[4003253]})
    records, report = read(tmp_path)
    assert records[-1].image_key == "38281420/132939515/9"
    assert records[-1].findings == (Finding(CANAL, "L3/L4", None),)
    assert not report.rejected
    assert "study 38281420 not in train.csv: severities empty" in reasons(report.warnings)


def test_unknown_series_gets_view_unknown(tmp_path: Path) -> None:
    plant(tmp_path, series=SERIES[:-1])
    records, report = read(tmp_path)
    assert records[-1].view == "unknown" and records[0].view == "Sagittal T2/STIR"
    assert "series 38281420/132939515 not listed: view unknown" in reasons(report.warnings)


def test_coordinates_without_a_required_column_reject_the_file(tmp_path: Path) -> None:
    root = plant(tmp_path)
    header = ["study_id", "series_id", "instance", "condition", "level"]  # instance_number misnamed
    write_csv(root / "train_label_coordinates.csv", header, [COORDINATES[0]])
    records, report = read(tmp_path)
    assert records == []
    assert [(i.path, i.row) for i in report.rejected] == [(f"{RELEASE}/train_label_coordinates.csv", 1)]
    assert "instance_number" in report.rejected[0].reason


def test_an_absent_release_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the download failed\n")
    with pytest.raises(SourceError, match="rsna: release not found .*train_label_coordinates.csv"):
        read(tmp_path)


class TestBattery(ReaderBattery):
    SOURCE = rsna.SOURCE
    TABLE = "**/train_label_coordinates.csv"
    LATER = frozenset({"truncated_dicom", "not_dicom"})  # the reader never opens a DICOM
