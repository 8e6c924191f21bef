"""The helpers every release reader relies on: root finding, CSV reading into the report, path naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from build.report import StageReport
from build.sources.common import find_root, read_csv_rows, referenced_file, relpath, release_root


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("nesting", ["", "r", "r/r", "a/b/c"])
def test_find_root_up_to_three_levels(tmp_path: Path, nesting: str) -> None:
    root = tmp_path / nesting
    touch(root / "train.csv")
    assert find_root(tmp_path, "train.csv") == root


def test_find_root_gives_up_below_three_levels(tmp_path: Path) -> None:
    touch(tmp_path / "a/b/c/d/train.csv")
    assert find_root(tmp_path, "train.csv") is None


def test_find_root_prefers_shallowest_then_name_order(tmp_path: Path) -> None:
    touch(tmp_path / "a/deep/train.csv")
    touch(tmp_path / "z/train.csv")
    touch(tmp_path / "b/train.csv")
    assert find_root(tmp_path, "train.csv") == tmp_path / "b"


def test_find_root_with_a_path_marker_and_folder_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "decoy/annotations/train.csv").mkdir(parents=True)  # a folder is not the marker
    touch(tmp_path / "rel/annotations/train.csv")
    assert find_root(tmp_path, "annotations/train.csv") == tmp_path / "rel"


def test_find_root_of_a_missing_folder(tmp_path: Path) -> None:
    assert find_root(tmp_path / "absent", "train.csv") is None


def test_release_root_warns_source_not_found(tmp_path: Path) -> None:
    report = StageReport("ingest")
    assert release_root(tmp_path, "train.csv", report, "rsna") is None
    assert [(w.source, w.path) for w in report.warnings] == [("rsna", ".")]
    assert "source not found" in report.warnings[0].reason and "train.csv" in report.warnings[0].reason


def test_relpath_is_posix_and_relative(tmp_path: Path) -> None:
    assert relpath(tmp_path / "a" / "b.dcm", tmp_path) == "a/b.dcm"
    assert relpath(Path("x/y.csv"), None) == "x/y.csv"


def rows_of(path: Path, required: tuple[str, ...], report: StageReport) -> list[tuple[int, dict[str, str]]]:
    return list(read_csv_rows(path, required, report, "vindr", base=path.parent.parent))


def test_read_csv_rows_by_name_with_line_numbers(tmp_path: Path) -> None:
    path = touch(tmp_path / "rel/t.csv", "\ufeffb,a\n2,1\n\n4,\n")
    report = StageReport("ingest")
    assert rows_of(path, ("a", "b"), report) == [(2, {"b": "2", "a": "1"}), (4, {"b": "4", "a": ""})]
    assert not report.rejected and not report.warnings


def test_read_csv_rows_rejects_a_header_without_required_columns(tmp_path: Path) -> None:
    path = touch(tmp_path / "rel/t.csv", "a,c\n1,2\n")
    report = StageReport("ingest")
    assert rows_of(path, ("a", "b"), report) == []
    [issue] = report.rejected
    assert (issue.source, issue.path, issue.row) == ("vindr", "rel/t.csv", 1)
    assert "b" in issue.reason


def test_read_csv_rows_rejects_rows_of_the_wrong_width(tmp_path: Path) -> None:
    path = touch(tmp_path / "rel/t.csv", "a,b\n1,2\n3\n4,5,6\n7,8\n")
    report = StageReport("ingest")
    assert [line for line, _ in rows_of(path, ("a",), report)] == [2, 5]
    assert [(i.path, i.row) for i in report.rejected] == [("rel/t.csv", 3), ("rel/t.csv", 4)]
    assert "1 fields, header has 2" in report.rejected[0].reason


def test_read_csv_rows_rejects_a_missing_file(tmp_path: Path) -> None:
    report = StageReport("ingest")
    assert rows_of(tmp_path / "rel/absent.csv", ("a",), report) == []
    assert [(i.path, i.row) for i in report.rejected] == [("rel/absent.csv", None)]
    assert "cannot read" in report.rejected[0].reason


def test_read_csv_rows_rejects_undecodable_text(tmp_path: Path) -> None:
    path = tmp_path / "rel/t.csv"
    path.parent.mkdir()
    path.write_bytes(b"a\n1\n\xff\xfe\n")
    report = StageReport("ingest")
    rows_of(path, ("a",), report)
    [issue] = report.rejected
    assert issue.path == "rel/t.csv" and "unreadable CSV" in issue.reason


def test_referenced_file_rejects_once_with_path_and_lines(tmp_path: Path) -> None:
    report = StageReport("ingest")
    present = touch(tmp_path / "img/a.dicom")
    assert referenced_file(present, tmp_path, report, "vindr", "annotations/train.csv", [2])
    assert not referenced_file(tmp_path / "img/b.dicom", tmp_path, report, "vindr", "annotations/train.csv",
                               list(range(2, 10)))
    [issue] = report.rejected
    assert issue.path == "img/b.dicom"
    assert issue.reason == "missing file, referenced by annotations/train.csv line(s) 2, 3, 4, 5, 6 (+3 more)"
