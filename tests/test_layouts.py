"""Every download layout of every source (build/replicas/layouts.py) gives the same records and bytes.

One replica tree in the default layouts is written per module; each case copies one source folder, moves
it into another layout (nested, flat, wget mirror, zipped, SciDB workbook + zips) and reads it again.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import openpyxl
import pytest

from build import sources
from build.replicas import generate, layouts
from build.report import StageReport
from build.sources import csxa

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("layouts")
    generate(out, scale=0.3, seed=0)
    return out


def read(folder: Path, source: str):
    report = StageReport("ingest")
    release = sources.find(source, folder, report)
    return release, list(sources.READERS[source](release, report)), report


def digests(release, records) -> dict[str, str]:
    return {r.image_id: hashlib.sha256(release.read_bytes(r.path)).hexdigest() for r in records}


def moved(tree: Path, tmp_path: Path, source: str, variant: str) -> Path:
    folder = tmp_path / source
    shutil.copytree(tree / source, folder)
    layouts.apply(folder, source, variant)
    return folder


CASES = [(source, variant) for source, variants in layouts.LAYOUTS.items() for variant in variants[1:]
         if (source, variant) not in {("csxa", "scidb"), ("csxa", "scidb-unzipped")}]
EXPECTED_ROOTS = {
    ("buu", "once"): ("BUU-LSPINE_400", "folder"),
    ("buu", "zip"): ("BUU-LSPINE_400.zip/BUU-LSPINE_400", "zip"),
    ("rsna", "flat"): (".", "folder"),
    ("rsna", "zip-flat"): (".", "folder + rsna-2024-lumbar-spine-degenerative-classification.zip"),
    ("rsna", "zip-nested"): ("rsna-2024-lumbar-spine-degenerative-classification.zip/"
                             "rsna-2024-lumbar-spine-degenerative-classification", "zip"),
    ("vindr", "wget"): ("physionet.org/files/vindr-spinexr/1.0.0", "folder"),
    ("vindr", "zip"): (f"{layouts.vindr.ROOT}.zip/{layouts.vindr.ROOT}", "zip"),
}


@pytest.mark.parametrize(("source", "variant"), CASES)
def test_each_layout_gives_identical_records_and_bytes(tree, tmp_path, source, variant):
    release, expected, expected_report = read(tree / source, source)
    assert expected
    folder = moved(tree, tmp_path, source, variant)
    assert any(p.suffix == ".zip" for p in folder.rglob("*")) == ("zip" in variant)  # zipped, never unzipped
    found, records, report = read(folder, source)
    assert (found.shown(), found.layout) == EXPECTED_ROOTS[(source, variant)]
    assert records == expected
    assert digests(found, records) == digests(release, expected)
    assert [(i.row, i.reason) for i in report.rejected] == [(i.row, i.reason) for i in expected_report.rejected]


def test_csxa_scidb_workbook_and_zips_read_like_its_unzipped_folders(tree, tmp_path):
    zipped = moved(tree, tmp_path / "a", "csxa", "scidb")
    unzipped = moved(tree, tmp_path / "b", "csxa", "scidb-unzipped")
    assert sorted(p.name for p in (zipped / "CSXA").iterdir()) == [
        "datasets-JSON.zip", "datasets-PNG.zip", "datasets.xlsx"]
    release, records, report = read(zipped, "csxa")
    other, same, _ = read(unzipped, "csxa")
    assert records == same and digests(release, records) == digests(other, same)
    assert not report.rejected and not report.warnings
    assert release.shown(records[0].path) == f"CSXA/datasets-PNG.zip/{records[0].path}"


def test_csxa_workbook_ids_keep_their_leading_zeros(tree, tmp_path):
    folder = moved(tree, tmp_path, "csxa", "scidb")
    book = openpyxl.load_workbook(folder / "CSXA" / "datasets.xlsx")
    cells = [row[0] for row in book.active.iter_rows(min_row=2)]
    assert {type(c.value) for c in cells} == {int, str}  # ids typed as numbers and as text, as spreadsheets do
    assert any(isinstance(c.value, int) and c.value < 1_000_000 for c in cells)  # a number that lost its zeros
    _, records, _ = read(folder, "csxa")
    _, placeholder, _ = read(tree / "csxa", "csxa")
    assert [r.image_key for r in records] == [r.image_key for r in placeholder]
    assert all(len(r.image_key) == 7 for r in records) and any(r.image_key.startswith("0") for r in records)
    assert [(r.findings, r.sex, r.age) for r in records] == [(r.findings, r.sex, r.age) for r in placeholder]


def unknown_workbook(folder: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Tabelle1"
    sheet.append(["Nr", "Geschlecht", "Form", "Kommentar"])
    for number, (form, note) in enumerate([("A", "x"), ("B", "y"), ("A", "z"), ("C", "w")], start=1):
        sheet.append([f"{number:07d}", "F", form, note])
    book.create_sheet("Legende").append(["Code", "Bedeutung"])
    book.save(folder / "datasets.xlsx")


def test_an_unknown_workbook_fails_with_what_was_found_and_the_keys_to_set(tree, tmp_path):
    folder = moved(tree, tmp_path, "csxa", "scidb")
    unknown_workbook(folder / "CSXA")
    with pytest.raises(csxa.MappingError) as caught:
        sources.find("csxa", folder)
    message = str(caught.value)
    assert "CSXA: configs/csxa.yaml does not fit CSXA/datasets.xlsx: no key column" in message
    assert "sheet 'Tabelle1': columns ['Nr', 'Geschlecht', 'Form', 'Kommentar']" in message
    assert "sheet 'Legende': columns ['Code', 'Bedeutung']" in message
    assert "candidate class column 'Form': 'A' (2), 'B' (1), 'C' (1)" in message
    assert "image ids matched: 0 of" in message
    assert "metadata.key:" in message and "class_key:" in message and "classes:" in message
    assert "metadata.sheet:" in message


def test_a_workbook_whose_ids_match_no_image_says_so(tree, tmp_path):
    folder = moved(tree, tmp_path, "csxa", "scidb")
    raw = {**layouts_config(), "metadata": {**layouts_config()["metadata"], "key": "Nr"}, "class_key": "Form"}
    unknown_workbook(folder / "CSXA")
    with pytest.raises(csxa.MappingError, match=r"no image id matches a metadata key"):
        csxa.find(folder, None, raw)


def layouts_config() -> dict:
    from build import config

    return config.load("csxa")


@pytest.mark.parametrize(("change", "expected"), [
    ({"curvature": "x"}, r"configs/csxa.yaml: curvature: unknown key; allowed: root_marker, images"),
    ({"metadata": {"fil": "a.csv"}}, r"configs/csxa.yaml: metadata.fil: unknown key; allowed: file, sheet"),
    ({"class_from": "filename"}, r"configs/csxa.yaml: class_from: Input should be 'metadata' or 'annotation'"),
    ({"classes": {"Lordosis": "lordotic"}}, r"classes.lordosis: Input should be 'lordosis', 'straight'"),
    ({"images": 3}, r"configs/csxa.yaml: images: Input should be a valid string"),
])
def test_the_mapping_is_validated_with_file_key_and_allowed_values(change, expected):
    with pytest.raises(csxa.MappingError, match=expected):
        csxa.mapping({**layouts_config(), **change})


def test_an_unknown_workbook_stops_the_build_before_anything_is_written(tree, tmp_path, capsys):
    from build.__main__ import main

    raw = tmp_path / "raw"
    folder = moved(tree, raw, "csxa", "scidb")
    unknown_workbook(folder / "CSXA")
    code = main(["ingest", "--raw", str(raw), "--work", str(tmp_path / "work"), "--sources", "csxa"])
    assert code == 4 and not (tmp_path / "work").exists()
    assert "candidate class column 'Form'" in capsys.readouterr().err


@pytest.mark.parametrize(("source", "variant"), [(s, v) for s, variants in layouts.LAYOUTS.items() for v in variants])
def test_inventory_reports_every_layout(tree, tmp_path, source, variant):
    from build import inventory

    folder = moved(tree, tmp_path, source, variant) if variant != layouts.DEFAULT[source] else tree / source
    _, records, _ = read(tree / source, source)
    result = inventory.inventory(source, folder)
    assert not result.problem and result.records == len(records)
    zipped = variant in ("zip", "zip-flat", "zip-nested", "scidb")
    assert ("zip" in result.layout.split(",")[0]) == zipped, result.layout
    if source == "vindr":
        assert "JPEG 2000 Image Compression (Lossless Only)" in result.decoding
    if variant == "wget":
        assert result.layout == "folder, PhysioNet wget mirror"
    expected_files = {"buu": 7, "csxa": 15, "rsna": 186, "vindr": 31}[source]  # every file of the replica
    assert result.files == expected_files
    assert all(v.startswith("ok") for values in result.decoding.values() for v in values) != (source == "rsna")


def test_inventory_of_a_missing_source_says_so_and_exits_4(tmp_path, capsys):
    from build.__main__ import main

    (tmp_path / "vindr").mkdir()
    assert main(["inventory", "--raw", str(tmp_path), "--sources", "vindr", "buu"]) == 4
    out = capsys.readouterr().out
    assert "vindr:\n  NOT USABLE: vindr: release not found" in out and "buu:\n  NOT USABLE: buu: source folder" in out
