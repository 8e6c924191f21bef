"""The helpers every release reader relies on: root finding, CSV reading into the report, path naming."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from build.report import StageReport
from build.sources.common import read_csv_rows, referenced_file, relpath
from build.sources.release import MAX_DEPTH, Release, SourceError, locate, search


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def has_train_csv(release: Release) -> bool:
    return release.is_file("train.csv")


@pytest.mark.parametrize("nesting", ["", "r", "r/r", "a/b/c", "physionet.org/files/vindr-spinexr/1.0.0"])
def test_the_release_is_found_at_any_depth(tmp_path: Path, nesting: str) -> None:
    touch(tmp_path / nesting / "train.csv")
    found = locate(tmp_path, "rsna", has_train_csv, "train.csv")
    assert (found.folder, found.root, found.archive) == (tmp_path, nesting, None)


def test_the_search_is_bounded(tmp_path: Path) -> None:
    touch(tmp_path.joinpath(*"abcdefg"[: MAX_DEPTH + 1]) / "train.csv")
    with pytest.raises(SourceError, match="release not found"):
        locate(tmp_path, "rsna", has_train_csv, "train.csv")


def test_two_candidate_roots_are_an_error_naming_both(tmp_path: Path) -> None:
    touch(tmp_path / "a/deep/train.csv")
    touch(tmp_path / "z/train.csv")
    with pytest.raises(SourceError, match=r"two candidate release roots, .*a/deep and .*z"):
        locate(tmp_path, "rsna", has_train_csv, "train.csv")


def test_a_zip_beside_its_unzipped_copy_is_ambiguous(tmp_path: Path) -> None:
    touch(tmp_path / "rel/train.csv", "a\n1\n")
    with zipfile.ZipFile(tmp_path / "rel.zip", "w") as archive:
        archive.write(tmp_path / "rel/train.csv", "rel/train.csv")
    with pytest.raises(SourceError, match=r"rel and .*rel\.zip/rel"):
        locate(tmp_path, "rsna", has_train_csv, "train.csv")


def test_a_release_inside_a_zip_reads_like_the_folder(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "download.zip", "w") as archive:
        archive.writestr("long-name/train.csv", "a,b\n1,2\n")
        archive.writestr("long-name/img/x.dcm", b"pixels")
    found = locate(tmp_path, "rsna", has_train_csv, "train.csv")
    assert (found.root, found.archive, found.layout) == ("long-name", "download.zip", "zip")
    assert found.shown("img/x.dcm") == "download.zip/long-name/img/x.dcm"
    assert found.read_bytes("img/x.dcm") == b"pixels" and found.pixels("img/x.dcm") == b"pixels"
    assert found.names() == ["img", "train.csv"] and list(found.files()) == ["img/x.dcm", "train.csv"]
    report = StageReport("ingest")
    assert list(read_csv_rows(found, "train.csv", ("a",), report, "rsna")) == [(2, {"a": "1", "b": "2"})]


def test_unsafe_or_oversized_members_are_refused_and_never_read(tmp_path: Path, monkeypatch) -> None:
    from build.sources import release

    monkeypatch.setattr(release, "MAX_MEMBER_BYTES", 10)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as archive:
        archive.writestr("r/train.csv", "a\n1\n")
        archive.writestr("r/../../evil.csv", "x")
        archive.writestr("/etc/passwd", "x")
        archive.writestr("r/big.dcm", b"0" * 11)
    release._open_index.cache_clear()
    found = search(tmp_path, has_train_csv)
    assert [r.shown() for r in found.found] == ["d.zip/r"]
    assert sorted(name for name, _ in found.refused) == ["d.zip//etc/passwd", "d.zip/r/../../evil.csv",
                                                         "d.zip/r/big.dcm"]
    assert not found.found[0].is_file("big.dcm")
    report = StageReport("ingest")
    locate(tmp_path, "rsna", has_train_csv, "train.csv", report)
    assert {i.reason.split(" ")[0] for i in report.rejected} == {"unsafe", "member"}
    release._open_index.cache_clear()


def test_a_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source folder .*absent not found"):
        locate(tmp_path / "absent", "rsna", has_train_csv, "train.csv")


def test_relpath_is_posix_and_relative(tmp_path: Path) -> None:
    assert relpath(tmp_path / "a" / "b.dcm", tmp_path) == "a/b.dcm"
    assert relpath(Path("x/y.csv"), None) == "x/y.csv"


def rows_of(path: Path, required: tuple[str, ...], report: StageReport) -> list[tuple[int, dict[str, str]]]:
    release = Release(path.parent.parent, path.parent.name)
    return list(read_csv_rows(release, path.name, required, report, "vindr"))


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


def test_a_windows_1252_byte_costs_only_its_row_with_its_true_line(tmp_path: Path) -> None:
    path = tmp_path / "rel/t.csv"
    path.parent.mkdir()
    path.write_bytes(b"a,b\n1,x\n2,\"two\nlines\"\n3,caf\x92\n4,y\n")
    report = StageReport("ingest")
    assert rows_of(path, ("a",), report) == [(2, {"a": "1", "b": "x"}), (3, {"a": "2", "b": "two\nlines"}),
                                             (6, {"a": "4", "b": "y"})]
    [issue] = report.rejected
    assert (issue.path, issue.row) == ("rel/t.csv", 5)
    assert issue.reason == ("row is not UTF-8 (byte 0x92 is invalid UTF-8; in Windows-1252 it would be "
                            "'’': save the file as UTF-8), skipped")


def test_a_huge_field_costs_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "rel/t.csv"
    path.parent.mkdir()
    path.write_text("a,b\n1,x\n2," + "y" * 1_000_000 + "\n3,z\n", encoding="utf-8")
    report = StageReport("ingest")
    assert [line for line, _ in rows_of(path, ("a",), report)] == [2, 4]
    [issue] = report.rejected
    assert issue.row == 3 and "field larger than field limit" in issue.reason


def test_referenced_file_rejects_once_with_path_and_lines(tmp_path: Path) -> None:
    report = StageReport("ingest")
    touch(tmp_path / "img/a.dicom")
    release = Release(tmp_path)
    assert referenced_file(release, "img/a.dicom", report, "vindr", "annotations/train.csv", [2])
    assert not referenced_file(release, "img/b.dicom", report, "vindr", "annotations/train.csv",
                               list(range(2, 10)))
    [issue] = report.rejected
    assert issue.path == "img/b.dicom"
    assert issue.reason == "missing file, referenced by annotations/train.csv line(s) 2, 3, 4, 5, 6 (+3 more)"


def test_refused_members_of_a_zip_beside_the_files_are_reported(tmp_path: Path) -> None:
    touch(tmp_path / "rel/train.csv", "a\n1\n")
    with zipfile.ZipFile(tmp_path / "rel/images.zip", "w") as archive:
        archive.writestr("images/1.png", b"png")
        archive.writestr("../escape.png", b"png")
    report = StageReport("ingest")
    found = locate(tmp_path, "rsna", has_train_csv, "train.csv", report)
    assert found.layout == "folder + images.zip" and found.is_file("images/1.png")
    assert not found.is_file("../escape.png")
    assert [(i.path, i.reason.split(" ")[0]) for i in report.rejected] == [("rel/images.zip/../escape.png",
                                                                            "unsafe")]
