"""The synthetic replicas: exact release layouts, planted cases on disk, a manifest that adds up, determinism.

Readers are tested against the manifest, so these tests check the manifest against the files (the generator
never reads its files back to write it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import openpyxl
import pydicom
import pytest
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.uid import JPEG2000Lossless, RLELossless

import build.replicas as replicas
from build import config
from build.replicas import buu, csxa, rsna, vindr

HEX = re.compile(r"[0-9a-f]{32}")
STEM = re.compile(r"^(\d{4})-([FM])-(\d{3})Y([01])$")
LEVELS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
VINDR_LESIONS = {"Osteophytes", "Disc space narrowing", "Surgical implant", "Foraminal stenosis",
                 "Spondylolysthesis", "Vertebral collapse", "Other lesions", "No finding"}
RSNA_CONDITIONS = ("Spinal Canal Stenosis", "Left Neural Foraminal Narrowing",
                   "Right Neural Foraminal Narrowing", "Left Subarticular Stenosis",
                   "Right Subarticular Stenosis")
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")  # hex UIDs, 'L-SPINE', as released


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("replicas")
    return out, replicas.generate(out, scale=1, seed=0)


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split(",")


def images(manifest: dict, source: str) -> list[dict]:
    return [entry for entry in manifest["images"] if entry["source"] == source]


def edges(manifest: dict, source: str, kind: str) -> list[dict]:
    return [e for e in manifest["edge_cases"] if e["source"] == source and e["kind"] == kind]


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- CLI and manifest ---------------------------------------------------------------------------------

def test_cli_contract_and_rerun(tmp_path):
    parser = argparse.ArgumentParser()
    replicas.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--scale", "0.25", "--seed", "3"])
    assert (args.out, args.scale, args.seed) == (tmp_path, 0.25, 3)
    assert replicas.COMMAND == "replicas" and "\n" not in replicas.HELP
    assert replicas.main(args) == 0
    stale = tmp_path / "vindr" / "stale.txt"
    stale.write_text("left over")
    assert replicas.main(parser.parse_args(["--out", str(tmp_path), "--scale", "0.25", "--seed", "4"])) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["scale"] == 0.25
    assert not stale.exists()  # a rerun replaces each source tree


def test_manifest_is_written_sorted_and_returned(tree):
    out, manifest = tree
    text = (out / "manifest.json").read_text(encoding="utf-8")
    assert json.loads(text) == manifest
    assert text == json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert manifest["images"] == sorted(manifest["images"], key=lambda e: (e["source"], e["path"]))


def test_counts_add_up(tree):
    out, manifest = tree
    entries = manifest["images"]
    by_source = manifest["counts"]["images_by_source"]
    assert by_source == dict(Counter(e["source"] for e in entries))
    assert sum(by_source.values()) == len(entries)
    assert manifest["counts"]["images_by_disease"] == dict(Counter(d for e in entries for d in e["diseases"]))
    # scale 1 is about 1% of the paper
    assert 330 <= len(entries) <= 480
    assert 180 <= by_source["rsna"] <= 280 and 80 <= by_source["vindr"] <= 110
    assert by_source["csxa"] == 50 and 6 <= by_source["buu"] <= 10


def test_every_image_exists_once_with_canonical_diseases(tree):
    out, manifest = tree
    canonical = {d["name"] for d in config.load("labels")["diseases"]}
    assert len({(e["source"], e["path"]) for e in manifest["images"]}) == len(manifest["images"])
    assert len({(e["source"], e["image_key"]) for e in manifest["images"]}) == len(manifest["images"])
    for entry in manifest["images"]:
        assert (out / entry["source"] / entry["path"]).is_file(), entry["path"]
        assert entry["diseases"] and set(entry["diseases"]) <= canonical
        assert set(entry["levels"]) <= set(entry["diseases"])
        for finding in (f for found in entry["levels"].values() for f in found):
            assert finding["level"] in LEVELS
    assert set(manifest["counts"]["images_by_disease"]) == canonical  # every disease and Healthy planted


def test_lookalikes_and_phi_markers_are_declared(tree):
    _, manifest = tree
    canonical = {d["name"] for d in config.load("labels")["diseases"]}
    groups = manifest["lookalikes"]
    assert groups and all(len(g) >= 2 and set(g) <= canonical for g in groups)
    assert len({d for g in groups for d in g}) == sum(len(g) for g in groups)  # disjoint
    markers = manifest["phi_markers"]
    assert markers and all(m.startswith("SPINEBENCH-FAKE-PHI-") for m in markers)


def test_every_edge_case_exists_on_disk(tree):
    out, manifest = tree
    kinds = Counter((e["source"], e["kind"]) for e in manifest["edge_cases"])
    expected = {
        ("buu", "nested_root"), ("buu", "duplicate_copy"), ("buu", "missing_csv"), ("buu", "short_csv"),
        ("buu", "swapped_points"), ("rsna", "empty_grade"), ("rsna", "multiple_axial_series"),
        ("rsna", "unpadded_instance_numbers"), ("rsna", "truncated_dicom"), ("rsna", "not_dicom"),
        ("vindr", "empty_no_finding_box"), ("vindr", "misspelled_label"), ("vindr", "unknown_label"),
        ("vindr", "degenerate_box"), ("vindr", "dropped_labels_only"), ("vindr", "bits_stored_mismatch"),
    }
    assert set(kinds) == expected
    good = {(e["source"], e["path"]) for e in manifest["images"]}
    for edge in manifest["edge_cases"]:
        assert edge["expect"] in {"reject", "warn", "drop", "accept"}
        assert (out / edge["source"] / edge["path"]).exists(), edge
        if edge["expect"] in ("reject", "drop") and edge["path"].endswith((".jpg", ".dcm", ".dicom")):
            assert (edge["source"], edge["path"]) not in good  # broken or dropped images are no items
    dropped = {e["detail"] for e in edges(manifest, "vindr", "dropped_labels_only")}
    assert {"Surgical implant", "Other lesions"} <= dropped


# --- BUU ----------------------------------------------------------------------------------------------

def test_buu_layout(tree):
    out, manifest = tree
    root = out / "buu" / buu.ROOT
    assert root.parent.name == root.name == "BUU-LSPINE_400"  # nested twice on purpose
    assert sorted(p.name for p in root.iterdir()) == ["AP", "BUU-LSPINE_400_report.xlsx", "LA"]
    duplicates = {e["path"].rsplit("/", 1)[1] for e in edges(manifest, "buu", "duplicate_copy")}
    stems = set()
    for path in root.glob("*/*"):
        if path.name in duplicates:
            assert path.name.endswith("(1).jpg")
            continue
        match = STEM.match(path.stem)
        assert match and path.suffix in (".jpg", ".csv"), path.name
        assert path.parent.name == ("AP", "LA")[int(match.group(4))]
        stems.add(match.group(1))
    ids = sorted(int(s) for s in stems)
    assert ids != list(range(ids[0], ids[0] + len(ids)))  # not contiguous
    modes = {Image.open(out / "buu" / e["path"]).mode for e in images(manifest, "buu")}
    assert modes == {"L", "RGB"}
    book = openpyxl.load_workbook(root / "BUU-LSPINE_400_report.xlsx")
    assert book.sheetnames == ["diag_all_BUU-LSPINE_400"]
    table = list(book.active.values)
    assert table[0] == ("Column1", "filename", "gender", "age") and len(table) == 2 * len(stems) + 1


def test_buu_csvs_match_the_manifest(tree):
    out, manifest = tree
    short = {e["image_key"] for e in edges(manifest, "buu", "short_csv")}
    swapped = {e["image_key"]: int(e["detail"].split()[1]) for e in edges(manifest, "buu", "swapped_points")}
    slips = 0
    for entry in images(manifest, "buu"):
        text = (out / "buu" / entry["path"]).with_suffix(".csv").read_text()
        table = [line.split(",") for line in text.splitlines()]
        assert all(len(row) == 5 for row in table)  # no header: five numeric columns
        expected = 10 if entry["view"] == "AP" else 11
        assert len(table) == expected or (entry["image_key"] in short and len(table) < expected)
        for number, row in enumerate(table, 1):
            for cell in row[:4]:
                assert 4 <= len(cell.replace(".", "").lstrip("0")) <= 7, cell  # significant digits
            x1, x2 = float(row[0]), float(row[2])
            assert (x1 > x2) == (swapped.get(entry["image_key"]) == number)
        labelled = [i for i, row in enumerate(table) if int(row[4]) != 0]
        level = [f["level"] for f in entry["levels"].get("Spondylolisthesis", [])]
        if labelled:
            slips += 1
            (row,) = labelled
            assert row % 2 == 1  # a bottom-endplate row: row L4b (index 7) = slip at L4/L5
            assert level == [LEVELS[row // 2]]
            assert entry["diseases"] == ["Spondylolisthesis"]
        else:
            assert entry["diseases"] == ["Healthy"] and not level
    assert slips >= 2


# --- CSXA ---------------------------------------------------------------------------------------------

def test_csxa_matches_the_default_config(tree):
    out, manifest = tree
    layout = config.load("csxa")
    root = out / "csxa" / csxa.ROOT
    assert "metadata.csv" in layout["metadata"]["file"]
    table = rows(root / "metadata.csv")
    meta = layout["metadata"]
    assert header(root / "metadata.csv") == list(csxa.HEADER)
    first = {role: next(c for c in meta[role] if c in table[0]) for role in ("key", "patient", "sex", "age")}
    assert first == {"key": "image_id", "patient": "patient_id", "sex": "gender", "age": "age"}
    assert next(c for c in layout["class_key"] if c in table[0]) == "curvature"
    assert {row["curvature"].lower() for row in table} <= set(layout["classes"])
    assert all(re.fullmatch(r"\d{7}", row["image_id"]) for row in table)
    assert any(row["image_id"].startswith("0") for row in table)  # leading zeros, to be kept
    pngs = sorted(root.glob("images/*.png"))
    assert [p.stem for p in pngs] == sorted(row[first["key"]] for row in table)
    for png in pngs:
        annotation = json.loads((root / "annotations" / f"{png.stem}.json").read_text())
        shapes = annotation["shapes"]
        assert len(shapes) == 23 and {s["shape_type"] for s in shapes} == {"point"}
        assert all(len(s["points"]) == 1 and len(s["points"][0]) == 2 for s in shapes)
        with Image.open(png) as image:
            assert (annotation["imageWidth"], annotation["imageHeight"]) == image.size
    depth = {e["path"]: e["bits_stored"] for e in images(manifest, "csxa")}
    modes = Counter(Image.open(out / "csxa" / path).mode for path in depth)
    assert modes["I;16"] == sum(bits == 16 for bits in depth.values()) >= 2 and modes["L"] > modes["I;16"]


# --- RSNA ---------------------------------------------------------------------------------------------

def test_rsna_csv_headers_and_values(tree):
    out, _ = tree
    root = out / "rsna" / rsna.ROOT
    conditions = ("spinal_canal_stenosis", "left_neural_foraminal_narrowing",
                  "right_neural_foraminal_narrowing", "left_subarticular_stenosis",
                  "right_subarticular_stenosis")
    levels = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
    columns = ["study_id"] + [f"{c}_{lv}" for c in conditions for lv in levels]
    assert header(root / "train.csv") == columns
    assert header(root / "train_label_coordinates.csv") == [
        "study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    for name in ("train_series_descriptions.csv", "test_series_descriptions.csv"):
        assert header(root / name) == ["study_id", "series_id", "series_description"]
    assert header(root / "sample_submission.csv") == ["row_id", "normal_mild", "moderate", "severe"]
    grades = {v for row in rows(root / "train.csv") for k, v in row.items() if k != "study_id"}
    assert grades == {"Normal/Mild", "Moderate", "Severe", ""}
    views = {row["series_description"] for row in rows(root / "train_series_descriptions.csv")}
    assert views == {"Sagittal T1", "Sagittal T2/STIR", "Axial T2"}
    for row in rows(root / "train_label_coordinates.csv"):
        assert row["condition"] in RSNA_CONDITIONS and row["level"] in LEVELS
        assert float(row["x"]) > 0 and float(row["y"]) > 0
        path = root / "train_images" / row["study_id"] / row["series_id"] / f"{row['instance_number']}.dcm"
        assert path.is_file()
    test_study = rows(root / "test_series_descriptions.csv")[0]["study_id"]
    assert (root / "test_images" / test_study).is_dir()


def test_rsna_annotations_match_the_manifest(tree):
    out, manifest = tree
    root = out / "rsna" / rsna.ROOT
    grades = {row["study_id"]: row for row in rows(root / "train.csv")}
    marks: dict[str, list] = {}
    for row in rows(root / "train_label_coordinates.csv"):
        marks.setdefault(f"{row['study_id']}/{row['series_id']}/{row['instance_number']}", []).append(row)
    broken = {e["image_key"] for e in manifest["edge_cases"] if e["kind"] in ("truncated_dicom", "not_dicom")}
    entries = {e["image_key"]: e for e in images(manifest, "rsna")}
    assert set(marks) == set(entries) | broken
    per_study = Counter(key.split("/")[0] for key in marks)
    assert 9 <= np.mean(list(per_study.values())) <= 14  # about a dozen annotated slices per study
    for key, entry in entries.items():
        found = sorted((f["label"], f["level"], f["severity"]) for fs in entry["levels"].values() for f in fs)
        expected = sorted((r["condition"], r["level"], grades[r["study_id"]][_column(r)] or None)
                          for r in marks[key])
        assert found == expected
    blanks = {e["image_key"] for e in edges(manifest, "rsna", "empty_grade")}
    assert blanks
    for key in blanks:
        assert None in (f["severity"] for found in entries[key]["levels"].values() for f in found)


def _column(row: dict) -> str:
    """train.csv column of a coordinates row, e.g. left_subarticular_stenosis_l4_l5."""
    return f"{row['condition'].lower().replace(' ', '_')}_{row['level'].lower().replace('/', '_')}"


def test_rsna_dicoms(tree):
    out, manifest = tree
    views = {e["view"] for e in images(manifest, "rsna")}
    assert views == {"Sagittal T1", "Sagittal T2/STIR", "Axial T2"}
    numbers = set()
    for entry in images(manifest, "rsna")[:60]:
        study, series, instance = entry["image_key"].split("/")
        ds = pydicom.dcmread(out / "rsna" / entry["path"])
        assert ds.Modality == "MR" and ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.PatientID == ds.StudyInstanceUID == study and ds.SeriesInstanceUID == f"{study}.{series}"
        assert ds.InstanceNumber == int(instance) and ds.BitsStored == entry["bits_stored"]
        assert ds.file_meta.TransferSyntaxUID == entry["transfer_syntax"]
        for keyword in ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness"):
            assert keyword in ds
        assert ("RescaleSlope" in ds) == (entry["rescale"] is not None)
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint16 and pixels.shape == (ds.Rows, ds.Columns)
    for path in (out / "rsna" / rsna.ROOT / "train_images").glob("*/*/*.dcm"):
        assert path.stem == str(int(path.stem))  # never zero-padded
        numbers.add(int(path.stem))
    assert min(numbers) < 10 <= max(numbers)
    assert any(rsna.ROOT in e["path"] for e in edges(manifest, "rsna", "unpadded_instance_numbers"))


def test_rsna_broken_files_fail_to_decode(tree):
    out, manifest = tree
    (truncated,) = edges(manifest, "rsna", "truncated_dicom")
    (fake,) = edges(manifest, "rsna", "not_dicom")
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(out / "rsna" / fake["path"])
    ds = pydicom.dcmread(out / "rsna" / truncated["path"], stop_before_pixels=True)  # the header survives
    assert ds.Modality == "MR"
    with pytest.raises(Exception):
        pydicom.dcmread(out / "rsna" / truncated["path"]).pixel_array


# --- VinDr --------------------------------------------------------------------------------------------

def test_vindr_csvs(tree):
    out, manifest = tree
    root = out / "vindr" / vindr.ROOT
    assert root.name.startswith("vindr-spinexr-") and len(root.name) > 60
    lesions: dict[str, set] = {}
    boxes = Counter()
    for split in ("train", "test"):
        assert header(root / "annotations" / f"{split}.csv") == list(vindr.HEADER)
        for row in rows(root / "annotations" / f"{split}.csv"):
            assert all(HEX.fullmatch(row[k]) for k in ("study_id", "series_id", "image_id"))
            assert re.fullmatch(r"rad\d+", row["rad_id"])
            assert (root / f"{split}_images" / f"{row['image_id']}.dicom").is_file()
            lesions.setdefault(row["image_id"], set()).add(row["lesion_type"])
            box = [row[k] for k in ("xmin", "ymin", "xmax", "ymax")]
            if row["lesion_type"] == "No finding":
                assert box == ["", "", "", ""]
            else:
                boxes[row["image_id"]] += 1
                xmin, ymin, xmax, ymax = map(float, box)
                assert xmin <= xmax and ymin < ymax
    assert set().union(*lesions.values()) == VINDR_LESIONS | {"Scoliosis"}
    assert max(boxes.values()) >= 3 and max(len(v - {"No finding"}) for v in lesions.values()) == 3
    for entry in images(manifest, "vindr"):
        assert sorted(lesions[entry["image_key"]]) == entry["raw_labels"]
    for edge in edges(manifest, "vindr", "dropped_labels_only"):
        assert lesions[edge["image_key"]] <= {"Surgical implant", "Other lesions"}
    (degenerate,) = edges(manifest, "vindr", "degenerate_box")
    table = rows(out / "vindr" / degenerate["path"])
    assert any(r["image_id"] == degenerate["image_key"] and r["xmin"] == r["xmax"] for r in table)


def test_vindr_dicom_variety(tree):
    out, manifest = tree
    entries = images(manifest, "vindr")
    assert {e["bits_stored"] for e in entries} == {10, 12, 14, 16}
    assert {e["photometric"] for e in entries} == {"MONOCHROME1", "MONOCHROME2"}
    assert {e["voi"] for e in entries} == {"window", "window-multi", "lut", "none"}
    assert {e["dicom_modality"] for e in entries} == {"DX", "CR"}
    assert {RLELossless, JPEG2000Lossless} <= {e["transfer_syntax"] for e in entries}
    for entry in entries:
        ds = pydicom.dcmread(out / "vindr" / entry["path"], stop_before_pixels=True)
        assert ds.SOPInstanceUID == entry["image_key"] and ds.StudyInstanceUID == entry["patient_id"]
        assert HEX.fullmatch(ds.SeriesInstanceUID) and ds.BitsAllocated == 16
        assert ds.BitsStored == entry["bits_stored"] and ds.PhotometricInterpretation == entry["photometric"]
        assert ds.Modality == entry["dicom_modality"]
        assert ("VOILUTSequence" in ds) == (entry["voi"] == "lut")
        assert ("WindowCenter" in ds) == entry["voi"].startswith("window")
        if entry["voi"] == "window-multi":
            assert len(ds.WindowCenter) == len(ds.WindowWidth) == 2
        assert ds.get("PatientAge") == (None if entry["age"] is None else f"{entry['age']:03d}Y")
        assert ds.get("BodyPartExamined") == entry["body_part"]


def test_compressed_dicoms_decode(tree):
    out, manifest = tree
    compressed = [e for e in manifest["images"]
                  if e.get("transfer_syntax") in (RLELossless, JPEG2000Lossless)]
    assert {e["transfer_syntax"] for e in compressed} == {RLELossless, JPEG2000Lossless}
    for entry in compressed:
        ds = pydicom.dcmread(out / entry["source"] / entry["path"])
        assert ds.file_meta.TransferSyntaxUID == entry["transfer_syntax"]
        pixels = ds.pixel_array
        assert pixels.shape == (ds.Rows, ds.Columns) and int(pixels.max()) < 2 ** ds.BitsStored
        assert pixels.std() > 0


def test_phi_markers_in_every_dicom_header(tree):
    out, manifest = tree
    markers = set(manifest["phi_markers"])
    paths = [p for source in ("rsna", "vindr") for p in (out / source).rglob("*")
             if p.suffix in (".dcm", ".dicom")]
    fake = {out / "rsna" / e["path"] for e in edges(manifest, "rsna", "not_dicom")}
    assert len(paths) > 500
    for path in paths:
        if path in fake:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert {str(element.value) for element in ds if element.VR in ("PN", "LO", "ST")} >= markers, path


# --- determinism and scale ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("small")
    return out, replicas.generate(out, scale=0.25, seed=7)


def test_same_seed_same_bytes_whatever_the_workers(small, tmp_path):
    out, manifest = small
    assert replicas.generate(tmp_path / "b", scale=0.25, seed=7, workers=2) == manifest
    same = digests(out)
    assert digests(tmp_path / "b") == same
    replicas.generate(tmp_path / "c", scale=0.25, seed=8)
    other = digests(tmp_path / "c")
    assert sum(other.get(k) == v for k, v in same.items()) < len(same) / 10


def test_scale_multiplies_counts(tree, small):
    small = small[1]["counts"]["images_by_source"]
    large = tree[1]["counts"]["images_by_source"]
    assert all(small[s] < large[s] for s in ("csxa", "rsna", "vindr"))
    assert sum(small.values()) < sum(large.values()) / 2


def test_lookalikes_are_nearest_by_image_similarity(tree):
    """Each lookalike's partners rank among its three most similar other diseases (weight-free embedder)."""
    embedders = pytest.importorskip("build.embedders")
    out, manifest = tree
    entries = manifest["images"]
    pictures = [_picture(out / e["source"] / e["path"]) for e in entries]
    vectors = embedders.FallbackEmbedder().embed(pictures)
    by_disease: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        for disease in entry["diseases"]:
            by_disease.setdefault(disease, []).append(i)
    for group in manifest["lookalikes"]:
        for disease in group:
            query = vectors[by_disease[disease]]
            score = {other: float((query @ vectors[rows].T).mean()) for other, rows in by_disease.items()
                     if other not in (disease, "Healthy")}
            top = sorted(score, key=score.get, reverse=True)[:3]
            assert set(group) - {disease} <= set(top), (disease, top)


def _picture(path: Path) -> Image.Image:
    """8-bit grey rendering: min-max for DICOMs (inverted for MONOCHROME1), 16-bit PNGs scaled down."""
    if path.suffix in (".dcm", ".dicom"):
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(float)
        pixels = (pixels - pixels.min()) / (np.ptp(pixels) or 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            pixels = 1 - pixels
        return Image.fromarray((pixels * 255).astype(np.uint8))
    with Image.open(path) as image:
        if image.mode == "I;16":
            return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
        return image.convert("L")
