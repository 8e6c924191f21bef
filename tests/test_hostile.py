"""Hostile input: a copy of the replica tree full of broken, malicious and odd files (tests/hostile.py).

The ingest must finish, name every planted problem in its report (file, and row where it is about one
row) with a reason that says what is wrong, read nothing outside RAW/<source>, and still deliver every
good image of the replica manifest. The last test is the build's exit code (see its docstring).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from build import artifacts, cells, config, export, ingest, items
from build.imaging import standardize_file
from hostile import FORGED_LINE, FORMULA, HEADER_MARKER, ZIP_ESCAPE, plant, remove_planted_rejects
from test_ingest import expected_disease, planted_id
from test_leakage import leaks

REPO = Path(__file__).resolve().parent.parent
KINDS = {"reject": "rejected", "warn": "warnings", "drop": "dropped"}
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore::UserWarning")


@pytest.fixture(scope="module")
def hostile(built, tmp_path_factory):
    """One ingest of the replica tree with every hostile case planted (workers=2: the pool path)."""
    root = tmp_path_factory.mktemp("hostile")
    raw, outside, work = root / "raw", root / "outside", root / "work"
    shutil.copytree(built.raw, raw, symlinks=True)
    cases = plant(raw, outside, built.manifest)
    report = ingest.ingest(raw, work, config.profile("paper"), workers=2)
    records = {row["image_id"]: row for row in pq.read_table(work / artifacts.RECORDS).to_pylist()}
    saved = json.loads((work / "ingest_report.json").read_text())
    return SimpleNamespace(root=root, raw=raw, outside=outside, work=work, cases=cases, report=report,
                           records=records, saved=saved, manifest=built.manifest)


def matches(issue: dict, case) -> bool:
    return (issue["source"] == case.source and issue["path"] == case.path
            and (case.row is None or issue["row"] == case.row) and re.search(case.reason, issue["reason"]))


def test_the_corpus_covers_what_it_promises(hostile):
    kinds = {case.kind for case in hostile.cases}
    for kind in ("zero_byte_jpg", "zero_byte_csv", "zero_byte_png", "zero_byte_dcm", "zero_byte_dicom",
                 "truncated_in_header", "truncated_at_pixel_tag", "truncated_jpeg2000", "random_bytes_dcm",
                 "random_bytes_jpg", "no_pixel_data", "rows_zero", "dims_exceed_data", "data_exceeds_dims",
                 "declared_65535x65535", "declared_65535x65535_rle", "png_100000x100000", "png16_dark",
                 "png16_named_jpg", "cmyk_jpeg", "csv_bom_crlf", "test_csv_bom_crlf", "csv_extra_column",
                 "metadata_extra_column", "csv_missing_column", "short_row", "long_row", "csv_wrong_type",
                 "metadata_wrong_type", "non_integer_id", "wrong_type_box", "duplicate_row",
                 "csv_duplicate_row", "metadata_duplicate_row", "series_duplicate_row", "point_outside_slice",
                 "point_not_numeric", "missing_file", "symlink_image_outside", "symlink_csv_outside",
                 "symlink_study_folder_outside", "symlink_release_root_outside", "symlink_image_inside",
                 "symlink_loop", "dangling_symlink", "archive_member_dotdot", "formula_patient_id",
                 "newline_in_file_name"):
        assert kind in kinds, kind
    assert {case.source for case in hostile.cases} == {"buu", "csxa", "rsna", "vindr"}


def test_every_hostile_case_is_reported_with_file_row_and_reason(hostile):
    missing = []
    for case in hostile.cases:
        if case.expect == "accept":
            continue
        if not any(matches(issue, case) for issue in hostile.saved[KINDS[case.expect]]):
            near = [i for i in hostile.saved[KINDS[case.expect]] if i["path"] == case.path]
            missing.append(f"{case.kind}: {case.path}:{case.row} /{case.reason}/ not in report; "
                           f"same file: {near}")
    assert not missing, "\n".join(missing)


def test_nothing_good_is_rejected(hostile):
    """Every rejection is one the replica or the hostile corpus planted: no good file or row was refused."""
    expected = [case for case in hostile.cases if case.expect == "reject"]
    planted = [(case["source"], case["path"]) for case in hostile.manifest["edge_cases"]
               if case["expect"] == "reject"]
    unexpected = [issue for issue in hostile.saved["rejected"]
                  if (issue["source"], issue["path"]) not in planted
                  and not any(matches(issue, case) for case in expected)]
    assert not unexpected, "\n".join(map(str, unexpected))


def test_every_good_image_arrives_and_no_refused_one(hostile):
    good = {planted_id(image): image for image in hostile.manifest["images"]}
    accepted = {case.image_id for case in hostile.cases if case.image_id and case.arrives}
    refused = {case.image_id for case in hostile.cases if case.image_id and not case.arrives}
    assert accepted and refused and not accepted & refused
    assert set(hostile.records) == set(good) | accepted
    for image_id, image in good.items():
        row = hostile.records[image_id]
        expected = (expected_disease(image), image["modality"], image["view"],
                    image["patient_id"])
        assert (row["disease"], row["modality"], row["view"], row["patient_id"]) == expected, image_id


def test_odd_but_valid_images_come_out_as_real_pictures(hostile):
    """CMYK JPEG, a 16-bit PNG named .jpg and a dark 16-bit PNG are converted, not flattened."""
    for kind in ("cmyk_jpeg", "png16_named_jpg", "png16_dark", "point_outside_slice"):
        case = next(case for case in hostile.cases if case.kind == kind)
        row = hostile.records[case.image_id]
        assert row["contrast"] > 0.05, (kind, row["contrast"])
    cmyk = next(case.image_id for case in hostile.cases if case.kind == "cmyk_jpeg")
    header = json.loads(hostile.records[cmyk]["header"])
    assert header["mode"] == "CMYK"  # what was converted stays visible in the records


def test_files_behind_refused_symlinks_were_never_read(hostile):
    """Each link target is a valid image with pixels of its own: had it been read, its hash would be in the
    records. (The mirror's image id is checked by test_every_good_image_arrives_and_no_refused_one.)"""
    targets = [path for path in hostile.outside.rglob("*")
               if path.suffix in (".jpg", ".png", ".dcm", ".dicom")]
    assert len(targets) >= 5
    hashes = {row["sha256"] for row in hostile.records.values()}
    for target in targets:
        assert standardize_file(target).sha256 not in hashes, target


def test_archive_member_names_never_become_paths(hostile):
    """Nothing in the build extracts archives; the workbook (a zip with a ../ member) is read in memory."""
    assert not list(hostile.root.parent.rglob(ZIP_ESCAPE))
    assert not (REPO / ZIP_ESCAPE).exists() and not (REPO.parent / ZIP_ESCAPE).exists()


def test_reports_of_hostile_input_leak_no_phi(hostile):
    """Error messages quote files; they must never quote a DICOM header."""
    assert leaks(hostile.work, hostile.manifest["phi_markers"]) == []


def test_report_names_each_file_relative_to_its_source(hostile):
    for issue in hostile.saved["rejected"] + hostile.saved["warnings"]:
        assert not issue["path"].startswith("/"), issue
        assert len(issue["reason"]) >= 10, issue


def case_of(hostile, kind: str):
    return next(case for case in hostile.cases if case.kind == kind)


def test_a_newline_in_a_file_name_cannot_forge_a_log_line(hostile, tmp_path):
    """The name `csxa_90010<newline>WARNING rejected [vindr] forged.dicom: ...png` is reported (JSON keeps
    it exact), and on the terminal it is one line with the newline escaped, never a line of its own."""
    case = case_of(hostile, "newline_in_file_name")
    line = next(issue.line() for issue in hostile.report.rejected if issue.path == case.path)
    assert "\n" not in line and f"csxa_90010\\n{FORGED_LINE}.png: no class" in line
    result = subprocess.run([sys.executable, "-m", "build", "-v", "ingest", "--raw", str(hostile.raw), "--work",
                             str(tmp_path / "work"), "--workers", "1", "--sources", "csxa"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert any(f"csxa_90010\\n{FORGED_LINE}" in text for text in lines), lines
    assert not [text for text in lines if text.startswith(FORGED_LINE)]


@pytest.mark.parametrize("value, formula", [
    ("=cmd|' /C calc'!A0", True), ("+1+cmd", True), ("-2+3", True), ("@SUM(A1)", True), ("\t=1", True),
    ("\r=1", True), ("-3", False), ("+1.5", False), ("P90001", False), ("Healthy", False), ("L4/L5", False),
    ("", False),
])
def test_what_counts_as_a_formula_cell(value, formula):
    assert cells.is_formula(value) is formula


def test_a_formula_cell_is_published_as_text_with_a_warning(hostile, tmp_path):
    """A patient id `=cmd|...` from CSXA's metadata and a reviewer's question `=HYPERLINK(...)` reach the
    Hub folder with a leading apostrophe, each with a warning; every other published text is unchanged."""
    case = case_of(hostile, "formula_patient_id")
    assert hostile.records[case.image_id]["patient_id"] == FORMULA  # the work folder keeps what was read
    work = tmp_path / "work"
    shutil.copytree(hostile.work, work)
    item_id, question = f"{case.image_id}-sdd", '=HYPERLINK("http://example.invalid","see")'
    review = work / "review" / "decisions.jsonl"
    review.parent.mkdir()
    review.write_text(json.dumps({"id": item_id, "decision": "correct", "fields": {"question": question},
                                  "reviewer": "t", "time": "2026-12-01T00:00:00Z"}) + "\n")
    report = items.make_items(work, config.profile("paper"), "fallback", 32, "cpu", review)
    warned = sorted(issue.reason.split()[0] for issue in report.warnings if f"of item {item_id} " in issue.reason)
    assert warned == ["patient_id", "question"]
    folder = export.export(work, tmp_path / "out")
    published = pq.read_table(folder / "data" / "diagnosis").drop_columns(["image"]).to_pylist()
    row = next(row for row in published if row["id"] == item_id)
    assert (row["patient_id"], row["question"]) == ("'" + FORMULA, "'" + question)
    texts = [value for row in published for value in row.values() if isinstance(value, str)]
    assert len(texts) > 1000 and not [text for text in texts if cells.is_formula(text)]
    originals = {r["image_id"]: r["patient_id"] for r in hostile.records.values()}
    assert all(row["patient_id"] == originals[row["image_id"]] for row in published if row["id"] != item_id)


# --- whole-file problems: each costs that file's data, and only that --------------------------------


def one_source(built, tmp_path: Path, source: str) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(built.raw / source, raw / source)
    return raw


@pytest.mark.parametrize("source, relative, content, reason, row", [
    ("rsna", "rsna-2024-lumbar-spine-degenerative-classification/train_label_coordinates.csv", "",
     r"^empty CSV: no header line$", None),
    ("rsna", "rsna-2024-lumbar-spine-degenerative-classification/train_label_coordinates.csv",
     "study_id,series_id,instance_number,condition,x,y\n1,2,3,Spinal Canal Stenosis,1,1\n",
     r"^header lacks column\(s\) level$", 1),
    ("csxa", "CSXA/metadata.csv", "\ufeffimage_id,image_id,patient_id,gender,age,curvature\r\n",
     r"^header repeats column\(s\) image_id$", 1),
])
def test_a_broken_index_csv_is_rejected_by_name(built, tmp_path, source, relative, content, reason, row):
    raw = one_source(built, tmp_path, source)
    (raw / source / relative).write_text(content, encoding="utf-8")
    report = ingest.ingest(raw, tmp_path / "work", config.profile("paper"), workers=1, sources=[source])
    hits = [i for i in report.rejected if i.path == relative and re.search(reason, i.reason) and i.row == row]
    assert hits, [i.line() for i in report.rejected]
    assert not report.counts.get("images")  # every image needed that file


def test_a_symlinked_index_csv_leading_outside_is_refused(built, tmp_path):
    raw = one_source(built, tmp_path, "vindr")
    test_csv = next((raw / "vindr").rglob("annotations/test.csv"))
    shutil.copyfile(test_csv, tmp_path / "elsewhere.csv")
    test_csv.unlink()
    test_csv.symlink_to(tmp_path / "elsewhere.csv")
    report = ingest.ingest(raw, tmp_path / "work", config.profile("paper"), workers=1, sources=["vindr"])
    assert [i.line() for i in report.rejected if "annotations/test.csv" in i.path] == [
        f"[vindr] {test_csv.relative_to(raw / 'vindr').as_posix()}: symlink to {tmp_path / 'elsewhere.csv'} "
        "leads outside the source folder: CSV refused, not read"]
    train_images = {planted_id(image) for image in built.manifest["images"]
                    if image["source"] == "vindr" and image["split"] == "train"}
    assert report.counts["images"]["vindr"] == len(train_images)  # train.csv still read


# --- the exit code ----------------------------------------------------------------------------------


def start_ingest(raw: Path, work: Path, *sources: str) -> subprocess.Popen:
    """`python -m build ingest` in the background (the runs overlap: importing the CLI takes seconds)."""
    command = [sys.executable, "-m", "build", "ingest", "--raw", str(raw), "--work", str(work),
               "--workers", "1"]
    if sources:
        command += ["--sources", *sources]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_exit_code_says_whether_input_was_rejected(built, hostile, tmp_path):
    """`python -m build ingest` (build/ingest.py main, and build/run.py) exits
    0 when the ingest finished and rejected nothing (drops by the label policy and warnings do not count),
    3 when it finished but rejected some input (the report lists it),
    1 (an uncaught exception) or 2 (argparse usage error) as Python makes them.
    The replicas always plant rejects, so 3; the hostile tree, 3; the replicas with their planted rejects
    removed (the manifest's edge cases with expect 'reject'), 0 and an empty `rejected` list.
    """
    clean = tmp_path / "clean"
    shutil.copytree(built.raw, clean)
    remove_planted_rejects(clean, built.manifest)
    processes = {
        "replicas": start_ingest(built.raw, tmp_path / "w-replicas", "buu"),
        "hostile": start_ingest(hostile.raw, tmp_path / "w-hostile", "buu"),
        "clean": start_ingest(clean, tmp_path / "w-clean"),
    }
    outputs = {name: process.communicate(timeout=300) for name, process in processes.items()}
    for name, (stdout, stderr) in outputs.items():
        assert "Traceback" not in stderr, (name, stderr[-2000:])
        assert "ingest:" in stdout, (name, stdout)  # the one-line summary
    clean_report = json.loads((tmp_path / "w-clean" / "ingest_report.json").read_text())
    assert clean_report["rejected"] == []  # the tree really is clean: only the exit code is left to check
    assert sum(clean_report["counts"]["images"].values()) == len(built.manifest["images"])
    codes = {name: process.returncode for name, process in processes.items()}
    assert codes == {"replicas": 3, "hostile": 3, "clean": 0}


# --- pixel files and header values (tests/hostile.py _plant_pixels) ---------------------------------


def test_the_pixel_corpus_covers_what_it_promises(hostile):
    kinds = {case.kind for case in hostile.cases}
    for kind in ("header_values_malformed", "photometric_not_a_term", "float32_dicom", "float32_dicom_nan",
                 "multi_frame_where_one_is_read", "padded_pixel_data", "png_named_dicom", "deflate_bomb",
                 "pydicom_mr_small_padded", "pydicom_12_bit_jpeg_extended"):
        assert kind in kinds, kind


def test_malformed_header_values_never_reach_work(hostile):
    """Planted into ViewPosition, Modality, VOILUTFunction, WindowCenter and PixelSpacing (and a
    PhotometricInterpretation): none may be in records.parquet, a sidecar or a report."""
    assert leaks(hostile.work, [HEADER_MARKER, "1e999"]) == []
    case = next(case for case in hostile.cases if case.kind == "header_values_malformed")
    header = json.loads(hostile.records[case.image_id]["header"])
    assert set(header["invalid_fields"].split(",")) == {"Modality", "WindowCenter", "VOILUTFunction",
                                                        "PixelSpacing", "ViewPosition"}


def test_float_and_12_bit_files_come_out_as_real_pictures(hostile):
    for kind in ("float32_dicom", "float32_dicom_nan", "pydicom_12_bit_jpeg_extended", "png_named_dicom",
                 "pydicom_mr_small_padded"):
        case = next(case for case in hostile.cases if case.kind == kind)
        assert hostile.records[case.image_id]["contrast"] > 0.05, kind
