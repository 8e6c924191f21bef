"""The VinDr-SpineXR reader on tiny release trees written here in the layout of docs/sources.md §4."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DigitalXRayImageStorageForPresentation
from tiny_dicoms import write_tiny_dicom

from build.imaging import ImageError, standardize_file
from build.records import Finding, SourceRecord
from build.report import StageReport
from build.sources import vindr
from build.sources.release import SourceError
from reader_battery import ReaderBattery

RELEASE = "vindr-spinexr-a-large-annotated-medical-image-dataset-for-spinal-lesions-detection-1.0.0"
COLUMNS = ["study_id", "series_id", "image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax"]
BOX = ("100.5", "200", "180.25", "260")
EMPTY_BOX = ("", "", "", "")


def hex_id(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()


A, B, C, D, E = (hex_id(f"image {n}") for n in "ABCDE")
S1, S2, S3 = (hex_id(f"study {n}") for n in "123")
HEADERS = {  # image -> tags written into its DICOM
    A: {"BodyPartExamined": "CSPINE", "ViewPosition": "LL", "PatientSex": "F", "PatientAge": "056Y"},
    B: {"BodyPartExamined": "L-SPINE", "ViewPosition": "AP", "PatientSex": "M", "PatientAge": "041Y"},
    C: {"BodyPartExamined": "LUMBAR", "ViewPosition": "LATERAL", "PatientSex": "O", "PatientAge": "003M"},
    D: {},
    E: {"BodyPartExamined": "TSPINE", "ViewPosition": "PA"},
}
TRAIN = [
    (S1, A, "rad1", "Osteophytes", BOX),
    (S1, A, "rad2", "Osteophytes", ("10", "20", "30", "40")),  # a second box: a second finding (`most_boxes` counts them)
    (S1, A, "rad1", "Disc space narrowing", BOX),
    (S1, B, "rad1", "No finding", EMPTY_BOX),
    (S1, B, "rad2", "No finding", EMPTY_BOX),
    (S2, C, "rad3", "Spondylolysthesis", BOX),  # sic, kept verbatim for the label map
    (S2, D, "rad1", "No finding", EMPTY_BOX),
    (S2, D, "rad2", "Foraminal stenosis", BOX),
]
TEST = [
    (S3, E, "rad3", "Vertebral collapse", BOX),
    (S3, E, "rad3", "Surgical implant", BOX),
    (S3, E, "rad3", "Other lesions", BOX),
]


def write_csv(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows((study, hex_id(f"series of {image}"), image, rad, lesion, *box)
                         for study, image, rad, lesion, box in rows)


def write_dicom(path: Path, tags: dict[str, str]) -> None:
    """A 2x2 DX image with only the given header tags beyond what a valid file needs."""
    uid = "1.2.3." + str(int(hashlib.md5(path.name.encode()).hexdigest()[:12], 16))
    write_tiny_dicom(path, DigitalXRayImageStorageForPresentation, uid, Modality="DX",
                     PhotometricInterpretation="MONOCHROME1", BitsStored=12, HighBit=11, **tags)


def plant(folder: Path, train: list = TRAIN, test: list = TEST, nest: str = RELEASE,
          missing: tuple[str, ...] = ()) -> Path:
    """Write a release under folder/nest: both CSVs and a DICOM per planted image (except `missing`)."""
    root = folder / nest
    write_csv(root / "annotations/train.csv", train)
    write_csv(root / "annotations/test.csv", test)
    for split, rows in (("train", TRAIN), ("test", TEST)):
        for image in {row[1] for row in rows} - set(missing):
            write_dicom(root / f"{split}_images/{image}.dicom", HEADERS[image])
    return root


def read(folder: Path) -> tuple[list[SourceRecord], StageReport]:
    report = StageReport("ingest")
    return list(vindr.read_release(folder, report)), report


def by_key(records: list[SourceRecord]) -> dict[str, SourceRecord]:
    return {record.image_key: record for record in records}


def with_header_facts(folder: Path, record: SourceRecord) -> SourceRecord:
    """The record as ingest completes it: header facts from the worker's one parse of the file."""
    return replace(record, **standardize_file(folder / RELEASE / record.path,
                                              header_facts=vindr.header_facts).facts)


def test_records_match_the_planted_release(tmp_path: Path) -> None:
    plant(tmp_path)
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == sorted([A, B, C, D, E])
    assert {(r.region, r.view, r.sex, r.age) for r in records} == {("unknown", "unknown", None, None)}
    got = by_key([with_header_facts(tmp_path, record) for record in records])
    assert got[A] == SourceRecord(
        source="vindr", image_key=A, patient_id=S1, modality="X-ray", region="cervical", view="lateral",
        path=f"train_images/{A}.dicom",  # relative to the release root, whatever the layout
        findings=(Finding("Disc space narrowing"), Finding("Osteophytes"), Finding("Osteophytes")), sex="F", age=56,
    )
    assert [(got[i].region, got[i].view, got[i].sex, got[i].age) for i in (B, C, D, E)] == [
        ("lumbar", "AP", "M", 41), ("lumbar", "lateral", None, None), ("unknown", "unknown", None, None),
        ("thoracic", "PA", None, None),
    ]
    assert got[B].findings == (Finding("No finding"),)
    assert got[C].findings == (Finding("Spondylolysthesis"),)
    assert got[D].findings == (Finding("Foraminal stenosis"), Finding("No finding"))
    assert got[E].path == f"test_images/{E}.dicom" and got[E].patient_id == S3
    assert [f.label for f in got[E].findings] == ["Other lesions", "Surgical implant", "Vertebral collapse"]
    assert all(f.level is None and f.severity is None for r in records for f in r.findings)
    assert not report.rejected
    [warning] = report.warnings  # 'No finding' from rad1 next to rad2's lesion on D
    assert warning.path == f"{RELEASE}/annotations/train.csv"
    assert D in warning.reason and "rad1" in warning.reason and "rad2" in warning.reason


def test_degenerate_boxes_lose_the_box_bad_ones_the_row_never_the_image(tmp_path: Path) -> None:
    bad = [
        (S1, A, "rad3", "Vertebral collapse", ("50", "20", "50", "40")),  # xmax == xmin
        (S1, A, "rad3", "Vertebral collapse", ("10", "40", "30", "20")),  # ymax < ymin
        (S1, A, "rad3", "Vertebral collapse", ("10", "20", "abc", "40")),
        (S1, A, "rad3", "Vertebral collapse", EMPTY_BOX),  # a lesion needs a box
        (S1, A, "rad3", "Vertebral collapse", ("nan", "20", "30", "40")),
        (S2, C, "rad3", "Osteophytes", ("30", "20", "10", "40")),  # xmax < xmin
    ]
    plant(tmp_path, train=TRAIN + bad)
    records, report = read(tmp_path)
    assert by_key(records)[A].findings == (Finding("Disc space narrowing"), Finding("Osteophytes"),
                                           Finding("Osteophytes"),  # two good boxes: two findings
                                           Finding("Vertebral collapse"))  # from the degenerate rows: once
    assert by_key(records)[C].findings == (Finding("Osteophytes"), Finding("Spondylolysthesis"))
    assert [(issue.row, issue.reason.split(" box")[0]) for issue in report.rejected] == [
        (12, "non-numeric"), (13, "non-numeric"), (14, "non-finite")]
    degenerate = [w for w in report.warnings if w.reason.startswith("degenerate box")]
    assert [w.row for w in degenerate] == [10, 11, 15]
    assert degenerate[0].reason == ("degenerate box {'xmin': '50', 'ymin': '20', 'xmax': '50', 'ymax': '40'}: "
                                    "box dropped, the image keeps its label")


def test_unknown_lesion_type_is_kept_with_a_warning(tmp_path: Path) -> None:
    plant(tmp_path, train=TRAIN + [(S2, C, "rad1", "Scoliosis", BOX)])
    records, report = read(tmp_path)
    assert by_key(records)[C].findings == (Finding("Scoliosis"), Finding("Spondylolysthesis"))
    assert [(w.row, w.reason) for w in report.warnings if "Scoliosis" in w.reason] == [
        (10, "unknown lesion_type 'Scoliosis', kept as written")]


def test_missing_image_is_rejected_once_with_its_path(tmp_path: Path) -> None:
    plant(tmp_path, missing=(A,))
    records, report = read(tmp_path)
    assert A not in by_key(records) and len(records) == 4
    [issue] = report.rejected
    assert issue.path == f"{RELEASE}/train_images/{A}.dicom"
    assert issue.reason == "missing file, referenced by annotations/train.csv line(s) 2, 3, 4"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_the_reader_never_opens_the_image(tmp_path: Path, damage: str) -> None:
    root = plant(tmp_path)
    path = root / f"train_images/{A}.dicom"
    # garbage fails to parse; a file cut after its meta group parses, without pixels: imaging rejects both
    path.write_bytes(b"this is not DICOM" * 20 if damage == "garbage" else path.read_bytes()[:300])
    records, report = read(tmp_path)
    record = by_key(records)[A]
    assert record.findings == (Finding("Disc space narrowing"), Finding("Osteophytes"), Finding("Osteophytes"))
    assert not report.rejected and len(report.warnings) == 1  # only the contradiction on D
    with pytest.raises(ImageError):
        with_header_facts(tmp_path, record)


@pytest.mark.parametrize("column, value", [
    ("study_id", S1.upper()), ("study_id", S1[:31]), ("image_id", f"{A}.dicom"), ("image_id", "12345")])
def test_ids_that_are_not_lowercase_hex_are_rejected(tmp_path: Path, column: str, value: str) -> None:
    row = dict(zip(("study", "image"), (S1, A)), **{column.split("_")[0]: value})
    plant(tmp_path, train=TRAIN + [(row["study"], row["image"], "rad1", "Osteophytes", BOX)])
    records, report = read(tmp_path)
    assert len(records) == 5
    assert [(i.row, i.reason) for i in report.rejected] == [
        (10, f"{column} {value!r} is not a 32-char lowercase hex id")]


def test_image_listed_in_both_splits_keeps_its_first_listing(tmp_path: Path) -> None:
    plant(tmp_path, test=TEST + [(S1, A, "rad1", "Vertebral collapse", BOX)])
    records, report = read(tmp_path)
    assert by_key(records)[A].path.endswith(f"train_images/{A}.dicom")
    assert Finding("Vertebral collapse") not in by_key(records)[A].findings
    assert [(i.path, i.row) for i in report.rejected] == [(f"{RELEASE}/annotations/test.csv", 5)]


def test_root_nested_twice(tmp_path: Path) -> None:
    plant(tmp_path, nest=f"physionet.org/files/{RELEASE}")
    records, report = read(tmp_path)
    assert len(records) == 5 and not report.rejected
    assert by_key(records)[E].path == f"test_images/{E}.dicom"
    assert report.warnings[0].path == f"physionet.org/files/{RELEASE}/annotations/train.csv"


def test_an_absent_release_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "vindr").mkdir()
    with pytest.raises(SourceError, match="vindr: release not found .*annotations/train.csv"):
        read(tmp_path / "vindr")


@pytest.mark.parametrize("tags, expected", [
    ({"BodyPartExamined": "C-SPINE", "ViewPosition": "AP"}, ("cervical", "AP", None, None)),
    ({"BodyPartExamined": "NECK", "ViewPosition": "RL"}, ("cervical", "lateral", None, None)),
    ({"BodyPartExamined": "LSPINE", "ViewPosition": "PA", "PatientAge": "070Y"}, ("lumbar", "PA", None, 70)),
    ({"BodyPartExamined": "CHEST", "ViewPosition": "LLO", "PatientSex": "m"},
     ("unknown", "unknown", "M", None)),
    ({"PatientAge": "056"}, ("unknown", "unknown", None, None)),
])
def test_header_whitelist(tmp_path: Path, tags: dict[str, str], expected: tuple) -> None:
    write_dicom(tmp_path / "x.dicom", {"PatientName": "Doe^Jane", "PatientID": "secret", **tags})
    facts = vindr.header_facts(pydicom.dcmread(tmp_path / "x.dicom"))
    assert facts == dict(zip(("region", "view", "sex", "age"), expected))


def test_a_tag_that_cannot_be_converted_is_an_unknown_fact(tmp_path: Path) -> None:
    class Unconvertible(pydicom.Dataset):  # what pydicom does with a value it cannot convert: raise
        def get(self, key, default=None):
            if key == "PatientAge":
                raise ValueError("invalid AS value")
            return super().get(key, default)

    write_dicom(tmp_path / "x.dicom", {"BodyPartExamined": "LSPINE", "PatientAge": "056Y"})
    dataset = Unconvertible(pydicom.dcmread(tmp_path / "x.dicom"))
    assert vindr.header_facts(dataset) == {"region": "lumbar", "view": "unknown", "sex": None, "age": None}


class TestBattery(ReaderBattery):
    SOURCE = vindr.SOURCE
    TABLE = "**/annotations/train.csv"
    LATER = frozenset({"dropped_labels_only"})  # the label map, not the reader, drops these
    FACTS = ("patient_id", "modality")  # region, view, sex and age come from the DICOM header
