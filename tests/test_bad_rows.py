"""One bad CSV row costs only that row (issue 14, item 5): its true line, the encoding problem named.

The four cases the red-team pass found: a Windows-1252 byte on line 25 of CSXA's metadata (it used to
lose all 50 images), the same in VinDr's train.csv (9 images lost, wrong line), in RSNA's series
descriptions (every view became `unknown`), and a 1 MB field in the coordinates file (the rest of the
file lost).
"""

from __future__ import annotations

from pathlib import Path

import test_source_csxa as csxa_case
import test_source_rsna as rsna_case
import test_source_vindr as vindr_case

from build.report import StageReport
from build.sources import csxa, rsna, vindr

CP1252 = "row is not UTF-8 (byte 0x92 is invalid UTF-8; in Windows-1252 it would be '’': save the file as UTF-8)"


def corrupt_line(path: Path, line: int, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` on one 1-based line of a file, byte for byte."""
    lines = path.read_bytes().split(b"\n")
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_bytes(b"\n".join(lines))


def test_a_windows_1252_byte_on_line_25_of_csxa_metadata_costs_that_image_only(tmp_path):
    rows = "".join(f"{n:07d},P{n},F,{30 + n % 40},Lordosis\n" for n in range(1, 51))
    csxa_case.default_release(tmp_path, rows)
    corrupt_line(tmp_path / "metadata.csv", 25, b",F,", b",F\x92,")  # the row of image 0000024
    report = StageReport("ingest")
    records = list(csxa.read_release(tmp_path, report))
    assert len(records) == 49 and "0000024" not in {r.image_key for r in records}
    assert [(i.path, i.row, i.reason) for i in report.rejected] == [
        ("metadata.csv", 25, f"{CP1252}, skipped"),
        ("images/0000024.png", None, "no class: no metadata row for '0000024'"),
    ]


def test_a_windows_1252_byte_in_vindr_train_csv_costs_only_its_row(tmp_path):
    root = vindr_case.plant(tmp_path)
    corrupt_line(root / "annotations" / "train.csv", 4, b"Disc space narrowing", b"Disc space narrowing\x92")
    report = StageReport("ingest")
    records = {r.image_key: r for r in vindr.read_release(tmp_path, report)}
    assert len(records) == 5  # every image arrives; A only loses the finding of the bad row
    assert {f.label for f in records[vindr_case.A].findings} == {"Osteophytes"}  # its two boxes stay
    assert [(i.path, i.row, i.reason) for i in report.rejected] == [
        (f"{vindr_case.RELEASE}/annotations/train.csv", 4, f"{CP1252}, skipped")]


def test_a_windows_1252_byte_in_rsna_series_descriptions_costs_one_series_view(tmp_path):
    root = rsna_case.plant(tmp_path)
    corrupt_line(root / "train_series_descriptions.csv", 3, b"Sagittal T1", b"Sagittal\x92T1")
    report = StageReport("ingest")
    views = {r.image_key: r.view for r in rsna.read_release(tmp_path, report)}
    assert views["4003253/1054713880/4"] == "unknown"  # the series of the bad row
    assert views["4003253/702807833/8"] == "Sagittal T2/STIR" and views["4003253/2448190387/2"] == "Axial T2"
    assert sum(view == "unknown" for view in views.values()) == 2  # that series' two slices, nothing else
    assert [(i.row, i.reason) for i in report.rejected] == [(3, f"{CP1252}, skipped")]


def test_a_1_mb_field_in_the_coordinates_costs_only_its_row(tmp_path):
    root = rsna_case.plant(tmp_path)
    corrupt_line(root / "train_label_coordinates.csv", 6, b"1.5", b"1" * 1_048_576)  # canal L5/S1
    report = StageReport("ingest")
    records = list(rsna.read_release(tmp_path, report))
    assert len(records) == 7  # the canal slice keeps its four other levels
    canal = next(r for r in records if r.image_key == "4003253/702807833/8")
    assert [f.level for f in canal.findings] == ["L1/L2", "L2/L3", "L3/L4", "L4/L5"]
    [issue] = report.rejected
    assert (issue.path, issue.row) == (f"{rsna_case.RELEASE}/train_label_coordinates.csv", 6)
    assert issue.reason.startswith("unparseable row, skipped: field larger than field limit")
