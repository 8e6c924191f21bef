"""BUU-LSPINE reader on tiny hand-built release trees in the real layout (docs/sources.md section 1)."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from PIL import Image

from build.records import Finding, SourceRecord
from build.report import StageReport
from build.sources import buu
from build.sources.release import SourceError
from reader_battery import ReaderBattery

ROWS = {"AP": 10, "LA": 11}
# 0-based CSV row of each endplate, cranial to caudal: L1 top, L1 bottom, ..., L5 bottom, S1 top
ROW = {f"L{k}{end}": 2 * (k - 1) + (end == "b") for k in range(1, 6) for end in "tb"} | {"S1t": 10}


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 90).save(path, format="JPEG")


def rows(view: str, labels: dict[str, int] | None = None, n: int | None = None) -> list[list[str]]:
    """Endplate rows as the release writes them: x1,y1,x2,y2,label (floats, integer label)."""
    labels = {ROW[name]: value for name, value in (labels or {}).items()}
    return [
        [f"{100.5 + i:.4f}", f"{200.25 + 40 * i:.5f}", f"{400.125 + i:.6f}", f"{205.0 + 40 * i:.4f}",
         str(labels.get(i, 0))]
        for i in range(ROWS[view] if n is None else n)
    ]


def write_csv(path: Path, table: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(row) + "\n" for row in table), encoding="utf-8")


def plant(root: Path, stem: str, labels: dict[str, int] | None = None, n: int | None = None,
          csv: bool = True) -> None:
    """One image of the release: <view folder>/<stem>.jpg and, unless told otherwise, its CSV (both view
    folders exist, as in every real release)."""
    for name in ROWS:
        (root / name).mkdir(parents=True, exist_ok=True)
    view = "AP" if stem.endswith("Y0") else "LA"
    jpeg(root / view / f"{stem}.jpg")
    if csv:
        write_csv(root / view / f"{stem}.csv", rows(view, labels, n))


def read(folder: Path) -> tuple[list[SourceRecord], StageReport]:
    report = StageReport("ingest")
    return list(buu.read_release(folder, report)), report


def reasons(issues) -> dict[str, str]:
    return {Path(issue.path).name: issue.reason for issue in issues}


def record(path: str, stem: str, *findings: Finding) -> SourceRecord:
    patient, sex, age_view = stem.split("-")
    return SourceRecord(
        source="buu", image_key=stem, patient_id=patient, modality="X-ray", region="lumbar",
        view="AP" if age_view.endswith("Y0") else "lateral", path=path, findings=tuple(findings),
        sex=sex, age=int(age_view[:3]),
    )


def test_levels_sex_age_and_view_come_from_rows_and_stems_under_a_nested_root(tmp_path):
    root = tmp_path / "BUU-LSPINE_400" / "BUU-LSPINE_400"
    plant(root, "0001-F-037Y0")
    plant(root, "0001-F-037Y1", {"L4b": 1})
    plant(root, "0007-M-062Y1", {"L5b": 2})
    plant(root, "0007-M-062Y0", {"L3b": 3, "L4b": 3})
    records, report = read(tmp_path)
    assert records == [  # paths relative to the release root, whatever the nesting
        record("AP/0001-F-037Y0.jpg", "0001-F-037Y0", Finding("normal")),
        record("AP/0007-M-062Y0.jpg", "0007-M-062Y0", Finding("slip", "L3/L4"), Finding("slip", "L4/L5")),
        record("LA/0001-F-037Y1.jpg", "0001-F-037Y1", Finding("slip", "L4/L5")),
        record("LA/0007-M-062Y1.jpg", "0007-M-062Y1", Finding("slip", "L5/S1")),
    ]
    assert (report.rejected, report.warnings) == ([], [])


def test_duplicates_bad_names_and_images_without_csv_are_rejected_with_reasons(tmp_path):
    plant(tmp_path, "1665-M-014Y1")
    jpeg(tmp_path / "LA" / "1665-M-014Y1(1).jpg")
    write_csv(tmp_path / "LA" / "1665-M-014Y1(1).csv", rows("LA"))
    jpeg(tmp_path / "AP" / "scan 12.jpg")
    plant(tmp_path, "0002-F-040Y1", csv=False)
    write_csv(tmp_path / "AP" / "0003-M-051Y0.csv", rows("AP"))
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == ["1665-M-014Y1"]
    assert reasons(report.rejected) == {
        "1665-M-014Y1(1).jpg": "duplicate copy of 1665-M-014Y1.jpg",
        "scan 12.jpg": r"file name does not match ^(\d{4})-([FM])-(\d{3})Y([01])$",
        "0002-F-040Y1.jpg": "no annotation CSV",
    }
    assert reasons(report.warnings) == {"0003-M-051Y0.csv": "annotation CSV without image"}


def test_duplicate_whose_original_is_missing_says_so(tmp_path):
    plant(tmp_path, "0001-F-037Y0")
    jpeg(tmp_path / "AP" / "0004-F-033Y0 (2).jpg")
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == ["0001-F-037Y0"]
    assert reasons(report.rejected) == {"0004-F-033Y0 (2).jpg": "duplicate copy of 0004-F-033Y0.jpg"
                                        " (the original is missing)"}


def test_view_digit_must_match_the_folder(tmp_path):
    jpeg(tmp_path / "AP" / "0005-M-070Y1.jpg")
    write_csv(tmp_path / "AP" / "0005-M-070Y1.csv", rows("LA"))
    records, report = read(tmp_path)
    assert records == []
    assert reasons(report.rejected) == {"0005-M-070Y1.jpg": "view digit Y1 (lateral) but the file is in AP/"}


@pytest.mark.parametrize(
    ("labels", "finding"), [({"L2b": 1}, Finding("slip")), ({}, Finding("normal"))], ids=["slip", "normal"]
)
def test_short_csv_keeps_the_image_without_levels(tmp_path, labels, finding):
    plant(tmp_path, "0009-F-045Y0", labels, n=8)
    records, report = read(tmp_path)
    assert [r.findings for r in records] == [(finding,)]
    assert [(i.path, i.reason) for i in report.warnings] == [
        ("AP/0009-F-045Y0.csv", "short CSV: 8 rows, expected 10; no level questions")
    ]


def test_long_csv_is_warned_and_gives_no_level(tmp_path):
    plant(tmp_path, "0009-F-045Y0", {"L5b": 1}, n=10)
    write_csv(tmp_path / "AP" / "0009-F-045Y0.csv", rows("LA", {"L5b": 1}))
    records, report = read(tmp_path)
    assert [r.findings for r in records] == [(Finding("slip"),)]
    assert reasons(report.warnings) == {
        "0009-F-045Y0.csv": "long CSV: 11 rows, expected 10; no level questions"
    }


def test_non_numeric_cell_rejects_the_image_with_the_row_number(tmp_path):
    plant(tmp_path, "0010-M-058Y1")
    table = rows("LA")
    table[3][1] = "12x"
    write_csv(tmp_path / "LA" / "0010-M-058Y1.csv", table)
    plant(tmp_path, "0011-F-061Y1")
    table = rows("LA")
    table[6] = table[6][:4]
    write_csv(tmp_path / "LA" / "0011-F-061Y1.csv", table)
    records, report = read(tmp_path)
    assert records == []
    assert [(i.path, i.row, i.reason) for i in report.rejected] == [
        ("LA/0010-M-058Y1.csv", 4, "non-numeric cell '12x'"),
        ("LA/0011-F-061Y1.csv", 7, "4 cells, expected 5 (x1,y1,x2,y2,label)"),
    ]


def test_empty_csv_rejects_the_image(tmp_path):
    plant(tmp_path, "0012-F-066Y0", n=0)
    records, report = read(tmp_path)
    assert records == []
    assert reasons(report.rejected) == {"0012-F-066Y0.csv": "empty annotation CSV"}


def test_label_on_a_top_endplate_row_is_warned_and_drops_the_levels(tmp_path):
    plant(tmp_path, "0013-M-049Y1", {"L3b": 1, "L4t": 2})
    records, report = read(tmp_path)
    assert [r.findings for r in records] == [(Finding("slip"),)]
    assert [(i.path, i.row, i.reason) for i in report.warnings] == [
        ("LA/0013-M-049Y1.csv", 7, "label 2 on the L4 top-endplate row (expected only on bottom rows);"
                                   " levels unreliable, no level questions")
    ]


def test_swapped_points_are_reported_but_change_nothing(tmp_path):
    plant(tmp_path, "0014-F-052Y1")
    table = rows("LA", {"L4b": 1})
    table[7] = [table[7][2], table[7][3], table[7][0], table[7][1], table[7][4]]
    write_csv(tmp_path / "LA" / "0014-F-052Y1.csv", table)
    records, report = read(tmp_path)
    assert [r.findings for r in records] == [(Finding("slip", "L4/L5"),)]
    assert report.rejected == []
    assert [(w.row, "swapped" in w.reason) for w in report.warnings] == [(8, True)]


def test_csv_with_bom_crlf_and_trailing_blank_line_reads(tmp_path):
    plant(tmp_path, "0015-M-030Y0")
    text = "\r\n".join(",".join(row) for row in rows("AP", {"L1b": 1})) + "\r\n\r\n"
    (tmp_path / "AP" / "0015-M-030Y0.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    records, report = read(tmp_path)
    assert [r.findings for r in records] == [(Finding("slip", "L1/L2"),)]
    assert report.warnings == []


def workbook(path: Path, rows_: list[tuple]) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "diag_all_BUU-LSPINE_400"
    sheet.append(("Column1", "filename", "gender", "age", "diagnosis"))
    for row in rows_:
        sheet.append(row)
    book.save(path)


def test_workbook_cross_checks_sex_and_age(tmp_path):
    plant(tmp_path, "0001-F-037Y0")
    plant(tmp_path, "0001-F-037Y1")
    plant(tmp_path, "0002-M-045Y0")
    workbook(tmp_path / "BUU-LSPINE_400_report.xlsx", [
        (0, "0001-F-037Y0.jpg", "F", 37, "normal"),
        (1, "0001-F-037Y1.jpg", "M", 37, "normal"),
        (2, "0002-M-045Y0.jpg", "M", 46, "normal"),
    ])
    records, report = read(tmp_path)
    assert len(records) == 3
    assert [(i.path, i.reason) for i in report.warnings] == [
        ("AP/0002-M-045Y0.jpg", "workbook says age 46, file name says 45"),
        ("LA/0001-F-037Y1.jpg", "workbook says sex M, file name says F"),
    ]


def test_unreadable_workbook_is_only_a_warning(tmp_path):
    plant(tmp_path, "0001-F-037Y0")
    (tmp_path / "BUU-LSPINE_400_report.xlsx").write_bytes(b"not a zip")
    records, report = read(tmp_path)
    assert len(records) == 1
    assert [i.path for i in report.warnings] == ["BUU-LSPINE_400_report.xlsx"]
    assert report.warnings[0].reason.startswith("workbook unreadable, sex/age not cross-checked: ")


def test_a_missing_view_folder_is_warned(tmp_path):
    jpeg(tmp_path / "LA" / "0001-F-037Y1.jpg")
    write_csv(tmp_path / "LA" / "0001-F-037Y1.csv", rows("LA"))
    records, report = read(tmp_path)
    assert [r.image_key for r in records] == ["0001-F-037Y1"]
    assert [(i.path, i.reason) for i in report.warnings] == [("AP", "no AP/ folder in the release")]


def test_a_folder_without_a_release_is_an_error(tmp_path):
    (tmp_path / "notes").mkdir()
    jpeg(tmp_path / "AP" / "0001-F-037Y0.jpg")  # an image without its CSV is no release
    with pytest.raises(SourceError, match=r"buu: release not found .*AP/ or LA/ folder with <stem>\.jpg"):
        read(tmp_path)


class TestBattery(ReaderBattery):
    SOURCE = buu.SOURCE
    TABLE = "**/LA/*.csv"
