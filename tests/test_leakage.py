"""No leakage: nothing identifying from the raw releases reaches any output byte of a build.

Every file of the work folder and the Hub folder is decoded before it is searched: Parquet column by
column (pages are compressed) plus its key-value metadata, JSON values (escapes undone), Markdown and other
text as text, PNG text chunks (tEXt, zTXt, iTXt, eXIf; also inside Parquet image columns), any other file
as raw bytes. Searched for: the replicas' PHI markers and every text value of every replica DICOM header
outside the whitelist (build.imaging.DICOM_WHITELIST, pinned here as WHITELIST).

Allowances, by design and exact (the value must be the file's own release id, in the tag listed here):
- RSNA: PatientID and StudyInstanceUID hold the study id, which the release publishes as study_id (its
  folder name) and SpineBench as patient_id.
- VinDr: StudyInstanceUID is the CSV's study_id (published as patient_id); SOPInstanceUID and the file
  meta's MediaStorageSOPInstanceUID are the CSV's image_id (the file name, part of image ids and paths).
- DICOM-standard UIDs (pydicom's UID registry: SOP classes, transfer syntaxes) name a kind of file, not
  a person.
- Values shorter than MIN_LENGTH characters (sex 'F', age '056Y', 'MR') cannot be told apart from
  ordinary text; none of them identifies anyone.
- BodyPartExamined and ViewPosition values that are the VinDr reader's coded vocabulary (vindr.REGIONS,
  vindr.VIEWS: 'LSPINE', 'L-SPINE', ...): defined terms, not identifiers ('LSPINE' also occurs in the
  name 'BUU-LSPINE_400'). Any other value of those tags stays forbidden.
Floating-point numbers in the outputs are not searched: their digits are not text.
Everything else (other UIDs such as SeriesInstanceUID, names, dates, accession numbers, descriptions,
device and private tags) must not appear anywhere.

Patient ids in outputs must be exactly the release's anonymised ids: RSNA study_id, VinDr study_id, the
BUU file name's 4-digit id, the CSXA metadata patient id; each checked against the image it belongs to.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pydicom.config
import pytest
from PIL import Image
from pydicom.multival import MultiValue
from pydicom.uid import UID_dictionary

from build.imaging import DICOM_WHITELIST
from build.records import slug
from build.sources import vindr

MIN_LENGTH = 6
# The header fields allowed out, pinned here: widening build.imaging.DICOM_WHITELIST must come with a
# review of this list, or test_the_whitelist_is_pinned fails (the search would otherwise widen with it).
WHITELIST = frozenset({
    "Modality", "PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "Rows", "Columns", "NumberOfFrames", "RescaleSlope", "RescaleIntercept",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "PixelSpacing", "ImagerPixelSpacing", "ViewPosition",
})
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR",
                      "UT"})
ALLOWED_ID_TAGS = {
    "rsna": {"PatientID": "study", "StudyInstanceUID": "study"},
    "vindr": {"StudyInstanceUID": "study", "SOPInstanceUID": "image", "MediaStorageSOPInstanceUID": "image"},
}
PATIENT_ID = {"buu": r"\d{4}", "rsna": r"\d+", "vindr": r"[0-9a-f]{32}", "csxa": r".+"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore::UserWarning")


# --- decoding every output byte ---------------------------------------------------------------------------


def png_texts(data: bytes) -> Iterator[str]:
    """The text a PNG carries beside its pixels: tEXt, zTXt, iTXt (decompressed) and eXIf chunks."""
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        at += 12 + length
        if kind == b"tEXt":
            yield body.decode("latin-1")
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            yield keyword.decode("latin-1") + "\n" + zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            language, _, rest = rest.partition(b"\0")
            translated, _, text = rest.partition(b"\0")
            text = zlib.decompress(text) if compressed else text
            yield b"\n".join((keyword, language, translated, text)).decode("utf-8", "replace")
        elif kind == b"eXIf":
            yield body.decode("latin-1")


def png_chunk_types(data: bytes) -> list[bytes]:
    at, kinds = len(PNG_SIGNATURE), []
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kinds.append(data[at + 4:at + 8])
        at += 12 + length
    return kinds


def flatten(value: object) -> Iterator[str]:
    """Every string a decoded value holds; bytes as Latin-1 text, PNG bytes as their text chunks."""
    if value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        if value.startswith(PNG_SIGNATURE):
            yield from png_texts(value)
        else:
            yield value.decode("latin-1")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from flatten(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from flatten(item)
    elif isinstance(value, float):  # a float's digits are not text (and would match any date by chance)
        return
    else:
        yield str(value)


def parquet_texts(path: Path) -> Iterator[tuple[str, str]]:
    parquet = pq.ParquetFile(path)
    for key, value in (parquet.metadata.metadata or {}).items():
        text = value.decode("latin-1")
        if key == b"ARROW:schema":
            text = base64.b64decode(value).decode("latin-1")
        yield f"{path} metadata {key.decode()}", text
    for column in parquet.schema_arrow.names:
        values = parquet.read(columns=[column]).column(column).to_pylist()
        yield f"{path} column {column}", "\n".join(flatten(values))


def output_texts(folder: Path) -> Iterator[tuple[str, str]]:
    """(where, decoded text) for every file under `folder`."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            yield from parquet_texts(path)
        elif path.suffix == ".png" or data.startswith(PNG_SIGNATURE):
            yield str(path), "\n".join(png_texts(data))
        elif path.suffix == ".json":
            yield str(path), data.decode("utf-8") + "\n" + "\n".join(flatten(json.loads(data)))
        else:  # Markdown, YAML, HTML, anything else: as text if it is text, else its bytes
            yield str(path), data.decode("utf-8", "replace") + "\n" + data.decode("latin-1")


def leaks(folders: Path | Iterable[Path], values: Iterable[str]) -> list[str]:
    """'<value> in <where>' for each forbidden value found in any output under `folders`."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    values = sorted(set(values))
    found = []
    for folder in folders:
        for where, text in output_texts(folder):
            found += [f"{value!r} in {where}" for value in values if value in text]
    return found


# --- what must not leak -----------------------------------------------------------------------------


def release_ids(raw: Path) -> dict[str, dict[str, str]]:
    """Per DICOM (relative to raw, posix): its own release ids, read from the release's index CSVs and
    paths (never from the headers): 'study' and, for VinDr, 'image'."""
    ids: dict[str, dict[str, str]] = {}
    for path in raw.glob("rsna/*/train_images/*/*/*.dcm"):
        ids[path.relative_to(raw).as_posix()] = {"study": path.parent.parent.name}
    for table in raw.glob("vindr/*/annotations/*.csv"):
        with open(table, newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                path = table.parent.parent / f"{table.stem}_images" / f"{row['image_id']}.dicom"
                ids[path.relative_to(raw).as_posix()] = {"study": row["study_id"], "image": row["image_id"]}
    return ids


def header_values(path: Path) -> Iterator[tuple[str, str]]:
    """(keyword, text value) of every text element outside the whitelist, file meta and sequences too."""
    with pydicom.config.disable_value_validation():
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        for element in [*dataset.file_meta, *dataset.iterall()]:
            if element.keyword in WHITELIST or element.VR not in TEXT_VRS:
                continue
            for value in element.value if isinstance(element.value, MultiValue) else [element.value]:
                text = str(value).strip()
                if text:
                    yield element.keyword or str(element.tag), text


def coded_term(keyword: str, text: str) -> bool:
    """A defined term of a tag the VinDr reader whitelists and maps (see the module docstring)."""
    vocabulary = {"BodyPartExamined": vindr.REGIONS, "ViewPosition": vindr.VIEWS}.get(keyword, {})
    return vindr._token(text) in vocabulary


def forbidden_values(raw: Path) -> dict[str, str]:
    """Forbidden value -> the first DICOM and tag it comes from, after the allowances of the docstring."""
    own = release_ids(raw)
    forbidden: dict[str, str] = {}
    for path in sorted([*raw.rglob("*.dcm"), *raw.rglob("*.dicom")]):
        shown = path.relative_to(raw).as_posix()
        source = shown.split("/")[0]
        try:
            values = list(header_values(path))
        except Exception:  # noqa: BLE001 - the replica's broken files: nothing readable, nothing to leak
            continue
        for keyword, text in values:
            id_kind = ALLOWED_ID_TAGS.get(source, {}).get(keyword)
            if id_kind and own.get(shown, {}).get(id_kind) == text:
                continue
            if len(text) < MIN_LENGTH or text in UID_dictionary or coded_term(keyword, text):
                continue
            forbidden.setdefault(text, f"{shown} {keyword}")
    return forbidden


# --- the tests on the shared build --------------------------------------------------------------------


def outputs(built) -> list[Path]:
    """The build's output folder: the work folder and the Hub folder, and anything written beside them."""
    return sorted({built.work.parent, built.hub.parent})


def test_the_whitelist_is_pinned():
    assert set(DICOM_WHITELIST) <= WHITELIST, set(DICOM_WHITELIST) - WHITELIST


def test_the_search_covers_every_file_and_enough_values(built):
    forbidden = forbidden_values(built.raw)
    kinds = {where.split()[-1] for where in forbidden.values()}
    expected = {"PatientName", "InstitutionName", "SeriesInstanceUID", "MediaStorageSOPInstanceUID"}
    assert expected <= kinds, kinds
    assert len(forbidden) > 100
    files = [p for folder in outputs(built) for p in folder.rglob("*") if p.is_file()]
    assert any(built.work in p.parents for p in files) and any(built.hub in p.parents for p in files)
    assert {p.suffix for p in files} >= {".parquet", ".json", ".md", ".png"}


def test_no_phi_marker_and_no_header_value_reaches_any_output(built):
    forbidden = forbidden_values(built.raw)
    values = [*built.manifest["phi_markers"], *forbidden]
    found = leaks(outputs(built), values)
    assert not found, "\n".join(f"{hit} (from {forbidden.get(hit.split(' in ')[0][1:-1], 'phi marker')})"
                                for hit in found[:20])


def test_allowed_ids_are_exactly_the_published_ids(built):
    """The allowance only covers header values equal to the file's own release id; and those ids are
    what the outputs publish (patient_id, image ids), so the allowance is the design, not a blind spot."""
    own = release_ids(built.raw)
    records = pq.read_table(built.work / "records.parquet").to_pylist()
    published = {row["patient_id"] for row in records} | {row["image_key"] for row in records}
    checked = 0
    for image in built.manifest["images"]:
        if image["source"] in ALLOWED_ID_TAGS:
            ids = own[f"{image['source']}/{image['path']}"]
            assert ids["study"] == image["patient_id"] and ids["study"] in published
            assert ids.get("image", image["image_key"]) in published
            checked += 1
    assert checked > 50


def test_image_pngs_carry_no_metadata_chunks(built):
    for path in [*(built.work / "images").glob("images-*.parquet"), *built.hub.rglob("data/*/*.parquet")]:
        table = pq.read_table(path)
        column = "png" if "png" in table.column_names else "image"
        for value in table.column(column).to_pylist():
            data = value if isinstance(value, bytes) else value["bytes"]
            assert set(png_chunk_types(data)) <= {b"IHDR", b"IDAT", b"IEND"}, path


def patient_ids(folders: Iterable[Path]) -> Iterator[tuple[str, dict]]:
    """(where, row) for every row of every output table or JSON object that has a patient_id."""
    for folder in folders:
        for path in sorted(folder.rglob("*.parquet")):
            if "patient_id" in pq.read_schema(path).names:
                columns = [c for c in ("patient_id", "image_id", "source") if c in pq.read_schema(path).names]
                for row in pq.read_table(path, columns=columns).to_pylist():
                    yield str(path), row
        for path in sorted(folder.rglob("*.json")):
            yield from ((str(path), item) for item in json_objects(json.loads(path.read_text()))
                        if "patient_id" in item)


def json_objects(value: object) -> Iterator[dict]:
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from json_objects(item)


def test_patient_ids_are_exactly_the_releases_anonymised_ids(built):
    expected = {f"{image['source']}-{slug(image['image_key'])}": (image["source"], image["patient_id"])
                for image in built.manifest["images"]}
    metadata = next(built.raw.rglob("csxa/*/metadata.csv"))
    with open(metadata, newline="", encoding="utf-8") as handle:
        csxa_ids = {f"csxa-{slug(row['image_id'])}": row["patient_id"] for row in csv.DictReader(handle)}
    seen = 0
    for where, row in patient_ids(outputs(built)):
        assert row.get("image_id") in expected, (where, row)
        source, patient = expected[row["image_id"]]
        assert row["patient_id"] == patient, (where, row)
        assert re.fullmatch(PATIENT_ID[source], row["patient_id"]), (where, row)
        if source == "buu":
            assert row["image_id"].startswith(f"buu-{patient}-")  # the file name's own id
        if source == "csxa":
            assert row["patient_id"] == csxa_ids[row["image_id"]]  # the metadata table's, not the stem
        seen += 1
    assert seen >= 3 * len(expected)  # records, qa and the hub's configurations all carry patient_id


# --- the search itself can fail ---------------------------------------------------------------------


def test_the_search_finds_planted_leaks(tmp_path):
    marker = "SPINEBENCH-FAKE-PHI-TEST"
    clean = tmp_path / "clean"
    clean.mkdir()
    pq.write_table(pa.table({"a": ["x"] * 1000}), clean / "ok.parquet", compression="zstd")
    assert leaks(clean, [marker]) == []

    def png_with(kind: bytes, body: bytes) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="PNG")
        data = buffer.getvalue()
        chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        return data[:33] + chunk + data[33:]  # after IHDR

    cases = {
        "compressed_parquet_value": lambda d: pq.write_table(
            pa.table({"a": ["x"] * 999 + [f"note {marker}"]}), d / "t.parquet", compression="zstd"),
        "nested_parquet_value": lambda d: pq.write_table(
            pa.table({"a": [[{"k": marker}]]}), d / "t.parquet", compression="snappy"),
        "parquet_metadata": lambda d: pq.write_table(
            pa.table({"a": [1]}).replace_schema_metadata({"info": marker}), d / "t.parquet"),
        "png_text_in_parquet": lambda d: pq.write_table(
            pa.table({"png": [png_with(b"tEXt", b"Author\0" + marker.encode())]}), d / "t.parquet"),
        "png_ztxt_file": lambda d: (d / "f.png").write_bytes(
            png_with(b"zTXt", b"Comment\0\0" + zlib.compress(marker.encode()))),
        "json_escaped": lambda d: (d / "r.json").write_text(
            json.dumps({"r": marker}).replace("-", "\\u002d")),  # the raw bytes do not hold the marker
        "markdown": lambda d: (d / "README.md").write_text(f"# card\n{marker}\n"),
    }
    for name, write in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        write(folder)
        assert leaks(folder, [marker]), name


# --- a build from replicas whose DICOMs carry many more identifying tags ---------------------------------


def add_identifying_tags(raw: Path, skip: set[str]) -> int:
    """Give every readable replica DICOM unique identifying values in tags real files carry."""
    count = 0
    for n, path in enumerate(sorted([*raw.rglob("*.dcm"), *raw.rglob("*.dicom")])):
        if path.relative_to(raw).as_posix() in skip:
            continue
        with pydicom.config.disable_value_validation():
            dataset = pydicom.dcmread(path)
            dataset.StudyDate = f"{1950 + n % 50}{1 + n % 12:02d}{1 + n % 28:02d}"
            dataset.StudyTime = f"{n % 24:02d}{n % 60:02d}17.{n:06d}"
            dataset.PatientBirthDate = f"{1920 + n % 60}0{1 + n % 9}{10 + n % 18}"
            dataset.AccessionNumber = f"SBACC{n:07d}"
            dataset.StudyDescription = f"SB STUDY DESCRIPTION {n}"
            dataset.SeriesDescription = f"SB SERIES DESCRIPTION {n}"
            dataset.ProtocolName = f"SB PROTOCOL {n}"
            dataset.StationName = f"SBSTATION{n}"
            dataset.DeviceSerialNumber = f"SBSERIAL{n:06d}"
            dataset.InstitutionalDepartmentName = f"SB DEPARTMENT {n}"
            dataset.OtherPatientIDs = [f"SBOTHER{n}A", f"SBOTHER{n}B"]
            dataset.PatientAddress = f"{n} SPINEBENCH STREET"
            if "vindr" in path.parts:
                dataset.PatientID = f"SBPATIENT{n:06d}"
                if n % 2:
                    dataset.BodyPartExamined = f"SBBODYPART{n}"
            block = dataset.private_block(0x0011, "SPINEBENCH PRIVATE", create=True)
            block.add_new(0x01, "LO", f"SB PRIVATE VALUE {n}")
            dataset.save_as(path)
        count += 1
    return count


def test_a_build_from_heavily_tagged_dicoms_leaks_nothing(tmp_path):
    from build import config, export, ingest, items
    from build.replicas import generate

    raw = tmp_path / "raw"
    manifest = generate(raw, scale=0.25, seed=1)
    broken = {f"{case['source']}/{case['path']}" for case in manifest["edge_cases"]
              if case["expect"] == "reject"}
    assert add_identifying_tags(raw, broken) > 50
    forbidden = forbidden_values(raw)
    assert {"AccessionNumber", "StudyDate", "PatientBirthDate", "SeriesDescription", "(0011,1001)",
            "PatientID", "BodyPartExamined"} <= {where.split()[-1] for where in forbidden.values()}
    work, out = tmp_path / "out" / "work", tmp_path / "out"
    profile = config.profile("paper")
    ingest.ingest(raw, work, profile, workers=2)
    items.make_items(work, profile, "fallback", 32, "cpu", None)
    hub = export.export(work, out)
    found = leaks([work, hub], [*manifest["phi_markers"], *forbidden])
    assert not found, "\n".join(found[:20])
