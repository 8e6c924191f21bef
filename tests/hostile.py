"""Hostile input for the ingest: plant broken, malicious and odd files into a COPY of a replica raw tree.

`plant(raw, outside)` adds files and rows to the four release trees under `raw` (never replacing a good
image or a good annotation row, so every image of the replica manifest must still arrive) and returns one
`Case` per planted problem: where the report must name it, with which reason, and which image must or
must not arrive. `outside` is a folder outside `raw` that symlinks point into; every file there is a
valid image with pixels of its own, so a reader that followed a link would be caught by its output.

`remove_planted_rejects(raw, manifest)` does the opposite for the replica's own planted rejects (the
manifest's edge cases with expect "reject"): it deletes those files and rows, leaving a tree that the
ingest must read without a single rejection.

Nothing in the build reads archives: the only zip is BUU's .xlsx workbook, which openpyxl reads in
memory. `plant` gives it a `../` member name anyway, so a future extractor is caught (see the test).
"""

from __future__ import annotations

import csv
import os
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from build.records import slug
from build.replicas import buu, csxa, rsna, vindr
from build.sources import rsna as rsna_reader
from build.sources import vindr as vindr_reader

SEED = 20250710
ZIP_ESCAPE = "escaped-from-xlsx.txt"  # a workbook member named ../../../../<this> must never be written
FORMULA = "=cmd|' /C calc'!A0"  # a CSV cell a spreadsheet would run; planted as a CSXA patient id
FORGED_LINE = "WARNING rejected [vindr] forged.dicom: this line was written by a file name"


@dataclass(frozen=True)
class Case:
    """One planted problem and what the ingest report must say about it."""

    source: str
    kind: str
    path: str  # as the report names it: relative to RAW/<source>, posix
    expect: str  # reject | warn | accept
    reason: str = ""  # regular expression the reason must match (reject, warn)
    row: int | None = None  # CSV line the issue names, when it is about one row
    image_id: str | None = None  # the image this case decides about
    arrives: bool = False  # whether that image must be in the records


# --- small writers ------------------------------------------------------------------------------------


def _rng(kind: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(kind.encode())])


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [row for row in csv.reader(handle)]


def _write_rows(path: Path, rows: list[list], *, bom: bool = False, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        csv.writer(handle, lineterminator="\r\n" if crlf else "\n").writerows(rows)


def _append_rows(path: Path, rows: list[list]) -> int:
    """Append rows to a CSV; returns the line number of the first appended row."""
    first = len(_read_rows(path)) + 1
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return first


def _link(link: Path, target: Path | str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def _flipped_picture(donor: Path, out: Path, fmt: str, variant: int) -> None:
    """The donor image mirrored or turned (one way per variant): valid, with pixels no other file has."""
    turns = (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(donor) as image:
        image.transpose(turns[variant]).save(out, format=fmt)


def _dataset(path: Path) -> pydicom.Dataset:
    with pydicom.config.disable_value_validation():
        return pydicom.dcmread(path)


def _save(ds: pydicom.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pydicom.config.disable_value_validation():
        ds.save_as(path, enforce_file_format=True)


def _inverted_dicom(donor: Path, out: Path, variant: int) -> None:
    """The donor DICOM with inverted pixels, rolled sideways by `variant` steps: valid, with pixels no
    other file has."""
    ds = _dataset(donor)
    pixels = np.roll(ds.pixel_array, 5 * variant, axis=1)
    ds.PixelData = (pixels.max() - pixels).astype("<u2").tobytes()
    _save(ds, out)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height 8-bit gray pixels but holds one row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


# --- donors: good replica files to build hostile ones from ------------------------------------------


def _donor(manifest: dict, source: str, **where: object) -> dict:
    return next(image for image in manifest["images"] if image["source"] == source
                and all(image.get(key) == value for key, value in where.items()))


def _image_id(source: str, key: str) -> str:
    return f"{source}-{slug(key)}"


# --- the corpus -----------------------------------------------------------------------------------------


def plant(raw: Path, outside: Path, manifest: dict) -> list[Case]:
    """Plant every hostile case into `raw` (a copy of a replica tree); symlink targets go to `outside`."""
    outside.mkdir(parents=True, exist_ok=True)
    return [*_plant_buu(raw / "buu", outside / "buu", manifest),
            *_plant_csxa(raw / "csxa", outside / "csxa", manifest),
            *_plant_rsna(raw / "rsna", outside / "rsna", manifest),
            *_plant_vindr(raw / "vindr", outside / "vindr", manifest),
            *_plant_pixels(raw / "vindr", manifest)]


def _plant_buu(folder: Path, outside: Path, manifest: dict) -> list[Case]:
    """New AP images 9001..9016 (stem grammar kept, so only the planted defect can reject them)."""
    donor = _donor(manifest, "buu", view="AP", diseases=["Healthy"])
    donor_jpg = folder / donor["path"]
    donor_rows = _read_rows(donor_jpg.with_suffix(".csv"))
    assert len(donor_rows) == 10, "the donor CSV must be a full AP CSV (L1 top .. L5 bottom)"
    ap = folder / buu.ROOT / "AP"
    cases: list[Case] = []

    def image(n: int, content: bytes | None = None, rows: list[list] | None = None) -> tuple[str, str, str]:
        stem = f"{9000 + n}-F-040Y0"
        jpg, table = ap / f"{stem}.jpg", ap / f"{stem}.csv"
        if content is not None:
            jpg.write_bytes(content)
        if rows is not None:
            _write_rows(table, rows)
        return f"{buu.ROOT}/AP/{stem}.jpg", f"{buu.ROOT}/AP/{stem}.csv", _image_id("buu", stem)

    good = donor_jpg.read_bytes()
    jpg, table, key = image(1, b"", donor_rows)
    cases.append(Case("buu", "zero_byte_jpg", jpg, "reject", r"^empty file$", image_id=key))
    jpg, table, key = image(2, good, None)
    (ap / Path(table).name).write_bytes(b"")
    cases.append(Case("buu", "zero_byte_csv", table, "reject", r"^empty annotation CSV$", image_id=key))
    jpg, table, key = image(3, _rng("buu-random").bytes(4096), donor_rows)
    cases.append(Case("buu", "random_bytes_jpg", jpg, "reject", r"^not a DICOM .* or image file$",
                      image_id=key))
    jpg, table, key = image(4, good[: len(good) // 2], donor_rows)
    cases.append(Case("buu", "truncated_jpg", jpg, "reject", r"^unreadable image: image file is truncated",
                      image_id=key))

    jpg, table, key = image(5, None, donor_rows)
    with Image.open(donor_jpg) as picture:
        picture.convert("CMYK").save(ap / Path(jpg).name, format="JPEG", quality=90)
    cases.append(Case("buu", "cmyk_jpeg", jpg, "accept", image_id=key, arrives=True))
    jpg, table, key = image(6, None, donor_rows)
    with Image.open(donor_jpg) as picture:
        deep = (np.asarray(picture.convert("L"), np.uint16) * 41).astype(np.uint16)  # 0..10455 of 65535
    Image.fromarray(deep).save(ap / Path(jpg).name, format="PNG")  # a 16-bit PNG named .jpg
    cases.append(Case("buu", "png16_named_jpg", jpg, "accept", image_id=key, arrives=True))

    jpg, table, key = image(7, good, None)
    _write_rows(ap / Path(table).name, donor_rows, bom=True, crlf=True)
    cases.append(Case("buu", "csv_bom_crlf", table, "accept", image_id=key, arrives=True))
    for n, kind, line, edit, reason in (
        (8, "csv_extra_column", 3, lambda row: [*row, "7"], r"^6 cells, expected 5"),
        (9, "csv_missing_column", 2, lambda row: row[:4], r"^4 cells, expected 5"),
        (10, "csv_wrong_type", 5, lambda row: [row[0], "abc", *row[2:]], r"^non-numeric cell 'abc'$"),
    ):
        rows = [list(row) for row in donor_rows]
        rows[line - 1] = edit(rows[line - 1])
        jpg, table, key = image(n, good, rows)
        cases.append(Case("buu", kind, table, "reject", reason, row=line, image_id=key))
    rows = [list(row) for row in donor_rows]
    jpg, table, key = image(11, good, rows[:4] + [rows[3]] + rows[4:])
    cases.append(Case("buu", "csv_duplicate_row", table, "warn", r"^long CSV: 11 rows, expected 10",
                      image_id=key, arrives=True))

    _flipped_picture(donor_jpg, outside / "escape.jpg", "JPEG", 0)
    _write_rows(outside / "escape.csv", donor_rows)
    jpg, table, key = image(12, None, donor_rows)
    _link(ap / Path(jpg).name, outside / "escape.jpg")
    cases.append(Case("buu", "symlink_image_outside", jpg, "reject",
                      r"^symlink to .*escape\.jpg leads outside the source folder: image refused, not read$",
                      image_id=key))
    jpg, table, key = image(13, good, None)
    _link(ap / Path(table).name, outside / "escape.csv")
    cases.append(Case("buu", "symlink_csv_outside", table, "reject",
                      r"^symlink to .*escape\.csv leads outside the source folder: annotation CSV refused",
                      image_id=key))
    jpg, table, key = image(14, None, donor_rows)
    _link(ap / Path(jpg).name, Path(jpg).name)  # a link to itself
    cases.append(Case("buu", "symlink_loop", jpg, "reject", r"^broken symlink", image_id=key))
    jpg, table, key = image(15, None, donor_rows)
    _link(ap / Path(jpg).name, outside / "no-such-file.jpg")
    cases.append(Case("buu", "dangling_symlink", jpg, "reject", r"^broken symlink", image_id=key))

    workbook = folder / buu.ROOT / f"{buu.RELEASE}_report.xlsx"
    with zipfile.ZipFile(workbook, "a") as book:
        book.writestr(f"../../../../{ZIP_ESCAPE}", "an archive member that tries to leave the folder\n")
    cases.append(Case("buu", "archive_member_dotdot", f"{buu.ROOT}/{workbook.name}", "accept"))
    return cases


def _plant_csxa(folder: Path, outside: Path, manifest: dict) -> list[Case]:
    """New images csxa_90001..; the metadata table gains a column and hostile rows. RAW/csxa itself
    becomes a symlink to a folder elsewhere, which is allowed: the source folder is the boundary."""
    elsewhere = folder.parent.parent / "elsewhere" / "csxa"
    elsewhere.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(folder, elsewhere)
    _link(folder, elsewhere)

    donor = _donor(manifest, "csxa", bits_stored=8)
    donor_png = folder / donor["path"]
    images = folder / csxa.ROOT / "images"
    table = folder / csxa.ROOT / "metadata.csv"
    shown_table = f"{csxa.ROOT}/metadata.csv"
    header, *rows = _read_rows(table)
    key_column = header.index("image_id")
    rows = [[*row, "note"] for row in rows]
    header = [*header, "notes"]  # an extra column nobody asked for
    cases = [Case("csxa", "metadata_extra_column", shown_table, "accept")]

    def row(stem: str, age: str = "40", curvature: str = "Lordosis") -> list[str]:
        return [stem, f"P9{stem[-5:]}", "F", age, "0.8000", "asymptomatic", curvature, ""]

    def png(n: int) -> tuple[str, str, Path]:
        stem = f"csxa_{90000 + n}"
        return stem, f"{csxa.ROOT}/images/{stem}.png", images / f"{stem}.png"

    extra: list[list[str]] = []
    stem, shown, path = png(1)
    path.write_bytes(b"")
    extra.append(row(stem))
    cases.append(Case("csxa", "zero_byte_png", shown, "reject", r"^empty file$",
                      image_id=_image_id("csxa", stem)))
    stem, shown, path = png(2)
    with Image.open(donor_png) as picture:
        dark = np.asarray(picture.convert("L"), np.uint16) * 4  # 16-bit, all values below 1021 of 65535
    Image.fromarray(dark).save(path, format="PNG")
    extra.append(row(stem))
    cases.append(Case("csxa", "png16_dark", shown, "accept", image_id=_image_id("csxa", stem), arrives=True))
    stem, shown, path = png(3)
    _png_header_only(path, 100_000, 100_000)
    extra.append(row(stem))
    cases.append(Case("csxa", "png_100000x100000", shown, "reject", r"^image too large",
                      image_id=_image_id("csxa", stem)))
    stem, shown, path = png(4)
    _flipped_picture(donor_png, outside / "escape.png", "PNG", 0)
    _link(path, outside / "escape.png")
    extra.append(row(stem))
    cases.append(Case("csxa", "symlink_image_outside", shown, "reject",
                      r"^symlink to .*escape\.png leads outside the source folder: image refused, not read$",
                      image_id=_image_id("csxa", stem)))
    stem, shown, path = png(5)
    _link(path, donor_png.name)  # relative, stays inside: allowed
    extra.append(row(stem))
    cases.append(Case("csxa", "symlink_image_inside", shown, "accept", image_id=_image_id("csxa", stem),
                      arrives=True))
    stem, shown, path = png(6)
    _flipped_picture(donor_png, path, "PNG", 1)
    extra.append(row(stem, age="forty"))
    age_line = len(rows) + 1 + len(extra)
    cases.append(Case("csxa", "metadata_wrong_type", shown_table, "warn", r"^age 'forty' is not a number$",
                      row=age_line, image_id=_image_id("csxa", stem), arrives=True))
    stem, shown, path = png(7)
    shutil.copyfile(donor_png, path)
    extra.append(row(stem)[:5])  # a row that lost its last fields
    short_line = len(rows) + 1 + len(extra)
    cases.append(Case("csxa", "metadata_short_row", shown_table, "reject", r"^5 fields, header has 8$",
                      row=short_line))
    cases.append(Case("csxa", "metadata_short_row_image", shown, "reject", r"^no class: no metadata row",
                      image_id=_image_id("csxa", stem)))
    duplicate = next(r for r in rows if r[key_column] == Path(donor["path"]).stem)
    extra.append(list(duplicate))
    cases.append(Case("csxa", "metadata_duplicate_row", shown_table, "warn",
                      rf"^duplicate key '{duplicate[key_column]}'; the first row is kept$",
                      row=len(rows) + 1 + len(extra)))
    extra.append(row("csxa_90008"))  # no such image
    cases.append(Case("csxa", "metadata_row_without_image", shown_table, "warn",
                      r"^metadata row for 'csxa_90008' matches no image$", row=len(rows) + 1 + len(extra)))
    stem, shown, path = png(9)
    _flipped_picture(donor_png, path, "PNG", 2)
    extra.append([stem, FORMULA, *row(stem)[2:]])  # kept as read; marked when the items are written
    cases.append(Case("csxa", "formula_patient_id", shown, "accept", image_id=_image_id("csxa", stem),
                      arrives=True))
    stem = f"csxa_90010\n{FORGED_LINE}"  # a file name that would add a line of its own to the log
    shown = f"{csxa.ROOT}/images/{stem}.png"
    shutil.copyfile(donor_png, images / f"{stem}.png")
    cases.append(Case("csxa", "newline_in_file_name", shown, "reject", r"^no class: no metadata row",
                      image_id=_image_id("csxa", stem)))
    _write_rows(table, [header, *rows, *extra])
    return cases


def _plant_rsna(folder: Path, outside: Path, manifest: dict) -> list[Case]:
    """Study 9000000001 (series 901, Sagittal T2/STIR) holds one hostile slice per instance; study
    9000000002 is a symlinked folder leading outside. Coordinates, grades and series rows are appended."""
    root = folder / rsna.ROOT
    donor_path = folder / _donor(manifest, "rsna", transfer_syntax=str(ExplicitVRLittleEndian))["path"]
    good = donor_path.read_bytes()
    study, series, description = 9_000_000_001, 901, "Sagittal T2/STIR"
    slices = root / "train_images" / str(study) / str(series)
    slices.mkdir(parents=True)
    coordinates = root / rsna_reader.MARKER
    shown_coordinates = f"{rsna.ROOT}/{rsna_reader.MARKER}"
    first_line = len(_read_rows(coordinates)) + 1
    rows: list[list] = []
    cases: list[Case] = []

    def slice_(instance: int, kind: str, expect: str, reason: str, x: str = "10.0", y: str = "10.0",
               arrives: bool = False, on_row: bool = False) -> Path:
        key = f"{study}/{series}/{instance}"
        rows.append([study, series, instance, "Spinal Canal Stenosis", "L1/L2", x, y])
        line = first_line + len(rows) - 1
        shown = shown_coordinates if on_row else f"{rsna.ROOT}/train_images/{key}.dcm"
        cases.append(Case("rsna", kind, shown, expect, reason, row=line if on_row else None,
                          image_id=_image_id("rsna", key), arrives=arrives))
        return slices / f"{instance}.dcm"

    slice_(1, "zero_byte_dcm", "reject", r"^empty file$").write_bytes(b"")
    slice_(2, "random_bytes_dcm", "reject", r"^not a DICOM").write_bytes(_rng("rsna-random").bytes(4096))
    slice_(3, "truncated_in_header", "reject", r"^truncated or corrupt DICOM: no data elements").write_bytes(
        good[:300])
    pixel_tag = good.index(b"\xe0\x7f\x10\x00", 132)
    slice_(4, "truncated_at_pixel_tag", "reject", r"^truncated DICOM: the pixel data element is cut off$"
           ).write_bytes(good[: pixel_tag + 6])

    def edited(instance: int, kind: str, reason: str, edit, compress: bool = False) -> None:
        ds = _dataset(donor_path)
        if compress:
            ds.compress(RLELossless, generate_instance_uid=False)
        edit(ds)
        _save(ds, slice_(instance, kind, "reject", reason))

    edited(5, "no_pixel_data", r"^no pixel data$", lambda ds: delattr(ds, "PixelData"))
    edited(6, "rows_zero", r"^impossible dimensions \d+x0 ", lambda ds: setattr(ds, "Rows", 0))
    edited(7, "dims_exceed_data", r"^truncated DICOM: pixel data \d+ bytes short$",
           lambda ds: setattr(ds, "Rows", ds.Rows * 2))
    edited(8, "data_exceeds_dims", r"the dimensions do not describe the data$",
           lambda ds: setattr(ds, "Rows", ds.Rows // 2))
    edited(9, "declared_65535x65535", r"^declared size 65535x65535 .* exceeds the limit",
           lambda ds: (setattr(ds, "Rows", 65535), setattr(ds, "Columns", 65535)))
    edited(10, "declared_65535x65535_rle", r"^declared size 65535x65535 .* exceeds the limit",
           lambda ds: (setattr(ds, "Rows", 65535), setattr(ds, "Columns", 65535)), compress=True)
    edited(11, "rle_dims_exceed_data", r"^cannot decode pixel data \(RLE Lossless\)",
           lambda ds: setattr(ds, "Rows", ds.Rows // 2), compress=True)  # the Rust decoder panics
    _inverted_dicom(donor_path, variant=1, out=slice_(12, "point_outside_slice", "warn",
                                       r"^point x=5000\.0, y=10\.0 lies outside the \d+x\d+ slice 12\.dcm",
                                       x="5000.0", arrives=True, on_row=True))
    _inverted_dicom(donor_path, variant=2, out=slice_(13, "point_not_numeric", "warn",
                                       r"^point x='left', y='' is not a pair of numbers; finding kept$",
                                       x="left", y="", arrives=True, on_row=True))
    loop = r"^symlink loop: the path cannot be resolved: refused, not read; referenced by"
    _link(slice_(14, "symlink_loop", "reject", loop), "14.dcm")
    slice_(15, "missing_file", "reject", rf"^missing file, referenced by {rsna_reader.MARKER} line\(s\) \d+$")

    for kind, row, reason in (
        ("non_integer_id", [f"{study}x", series, 16, "Spinal Canal Stenosis", "L1/L2", "1", "1"],
         rf"^non-integer study_id '{study}x'$"),
        ("unknown_condition", [study, series, 12, "Spinal Canal Stenosiss", "L1/L2", "1", "1"],
         r"^unknown condition 'Spinal Canal Stenosiss'$"),
        ("short_row", [study, series, 12, "Spinal Canal Stenosis", "L2/L3", "1"],
         r"^6 fields, header has 7$"),
    ):
        rows.append(row)
        cases.append(Case("rsna", kind, shown_coordinates, "reject", reason, row=first_line + len(rows) - 1))
    rows.append(rows[12 - 1])  # the row of instance 12 again
    cases.append(Case("rsna", "duplicate_row", shown_coordinates, "warn", r"^duplicate of line \d+",
                      row=first_line + len(rows) - 1))

    linked_study, linked_series = 9_000_000_002, 902
    _inverted_dicom(donor_path, outside / str(linked_study) / str(linked_series) / "1.dcm", 3)
    _link(root / "train_images" / str(linked_study), outside / str(linked_study))
    rows.append([linked_study, linked_series, 1, "Spinal Canal Stenosis", "L1/L2", "1", "1"])
    key = f"{linked_study}/{linked_series}/1"
    cases.append(Case("rsna", "symlink_study_folder_outside", f"{rsna.ROOT}/train_images/{key}.dcm", "reject",
                      r"^symlink to .* leads outside the source folder: refused, not read; referenced by",
                      image_id=_image_id("rsna", key)))
    _append_rows(coordinates, rows)

    grades = root / rsna_reader.GRADES_CSV
    header = _read_rows(grades)[0]
    _append_rows(grades, [[s, *(["Normal/Mild"] * (len(header) - 1))] for s in (study, linked_study)])
    descriptions = root / rsna_reader.SERIES_CSV
    table = _read_rows(descriptions)
    table += [[study, series, description], [linked_study, linked_series, description],
              [study, series, description]]
    _write_rows(descriptions, table, bom=True, crlf=True)
    shown = f"{rsna.ROOT}/{rsna_reader.SERIES_CSV}"
    cases.append(Case("rsna", "series_csv_bom_crlf", shown, "accept"))
    cases.append(Case("rsna", "series_duplicate_row", shown, "warn",
                      rf"^series {study}/{series} listed again; kept '{description}' of line "
                      rf"{len(table) - 2}$",
                      row=len(table)))
    return cases


def _plant_vindr(folder: Path, outside: Path, manifest: dict) -> list[Case]:
    """New image ids 000..0N in annotations/train.csv ('No finding' rows of one hostile study); test.csv
    rewritten with a BOM and CRLF; a symlinked mirror of the release beside the real one."""
    root = folder / vindr.ROOT
    donor = folder / _donor(manifest, "vindr", transfer_syntax=str(ExplicitVRLittleEndian))["path"]
    j2k = folder / _donor(manifest, "vindr", transfer_syntax=str(JPEG2000Lossless))["path"]
    train = root / "annotations" / "train.csv"
    shown_train = f"{vindr.ROOT}/annotations/train.csv"
    first_line = len(_read_rows(train)) + 1
    study, series = "feed" * 8, "beef" * 8
    rows: list[list[str]] = []
    cases: list[Case] = []

    def image(n: int, kind: str, expect: str, reason: str, arrives: bool = False) -> Path:
        image_id = f"{n:032x}"
        rows.append([study, series, image_id, "rad1", "No finding", "", "", "", ""])
        cases.append(Case("vindr", kind, f"{vindr.ROOT}/train_images/{image_id}.dicom", expect, reason,
                          image_id=_image_id("vindr", image_id), arrives=arrives))
        return root / "train_images" / f"{image_id}.dicom"

    image(1, "zero_byte_dicom", "reject", r"^empty file$").write_bytes(b"")
    image(2, "random_bytes_after_dicm", "reject", r"DICOM").write_bytes(
        b"\0" * 128 + b"DICM" + _rng("vindr-random").bytes(4096))
    data = j2k.read_bytes()
    image(3, "truncated_jpeg2000", "reject", r"^truncated DICOM").write_bytes(data[: len(data) * 2 // 3])
    _inverted_dicom(donor, outside / "escape.dicom", 1)
    _link(image(4, "symlink_image_outside", "reject",
                r"^symlink to .*escape\.dicom leads outside the source folder: refused, not read; "
                r"referenced by"),
          outside / "escape.dicom")
    image(5, "missing_file", "reject", r"^missing file, referenced by annotations/train\.csv line\(s\) \d+$")
    _inverted_dicom(donor, image(6, "good_image_with_a_duplicate_row", "accept", "", arrives=True), 2)
    rows.append(list(rows[-1]))
    cases.append(Case("vindr", "duplicate_row", shown_train, "warn",
                      rf"^duplicate of line {first_line + 5}; kept",
                      row=first_line + len(rows) - 1))
    for kind, row, reason in (
        ("short_row", [study, series, f"{7:032x}", "rad1", "No finding", "", "", ""],
         r"^8 fields, header has 9$"),
        ("long_row", [study, series, f"{7:032x}", "rad1", "No finding", "", "", "", "", "x"],
         r"^10 fields, header has 9$"),
        ("wrong_type_box", [study, series, f"{6:032x}", "rad2", "Osteophytes", "abc", "1", "20", "30"],
         r"^non-numeric box"),
    ):
        rows.append(row)
        cases.append(Case("vindr", kind, shown_train, "reject", reason, row=first_line + len(rows) - 1))
    _append_rows(train, rows)

    test = root / "annotations" / "test.csv"
    _write_rows(test, _read_rows(test), bom=True, crlf=True)
    cases.append(Case("vindr", "test_csv_bom_crlf", f"{vindr.ROOT}/annotations/test.csv", "accept"))

    mirror = outside / "mirror"
    mirror_id = "e" * 32
    _write_rows(mirror / "annotations" / "train.csv",
                [list(vindr_reader.COLUMNS),
                 [study, series, mirror_id, "rad1", "No finding", "", "", "", ""]])
    _write_rows(mirror / "annotations" / "test.csv", [list(vindr_reader.COLUMNS)])
    _inverted_dicom(donor, mirror / "train_images" / f"{mirror_id}.dicom", 3)
    _link(folder / "0-mirror", mirror)  # sorts before the real release root, at the same depth
    cases.append(Case("vindr", "symlink_release_root_outside", "0-mirror", "reject",
                      r"^symlink to .*mirror leads outside the source folder: folder refused, not searched$",
                      image_id=_image_id("vindr", mirror_id)))
    return cases


# --- pixel files and header values (issue 14 items 3, 8, 9; issue 12 item 8) -------------------------

HEADER_MARKER = "ZZHDRMARK"  # planted into whitelisted header fields: must never reach work/
BOMB_BYTES = 300 << 20  # what the deflated bomb inflates to: above build.imaging.MAX_FILE_BYTES


def _deflated_bomb(donor: Path, out: Path) -> None:
    """The donor's dataset, deflated, with a private element of BOMB_BYTES zeros: a file of ~300 KB. The
    zeros are streamed through the compressor, never held."""
    ds = _dataset(donor)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    _save(ds, out)  # the file meta, then the deflated dataset: re-deflated below with the bomb appended
    meta_end = 128 + 4 + 12 + int(pydicom.filereader.read_file_meta_info(out).FileMetaInformationGroupLength)
    head = out.read_bytes()
    dataset = zlib.decompress(head[meta_end:], -zlib.MAX_WBITS)
    element = (struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 8) + b"ZZBOMB  "
               + struct.pack("<HH2sHI", 0x0009, 0x1001, b"OB", 0, BOMB_BYTES))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [head[:meta_end], deflater.compress(dataset + element)]
    zeros = bytes(1 << 20)
    parts += [deflater.compress(zeros) for _ in range(BOMB_BYTES >> 20)]
    out.write_bytes(b"".join([*parts, deflater.flush()]))


def _plant_pixels(folder: Path, manifest: dict) -> list[Case]:
    """New VinDr images (ids 0x100..) whose pixels or header are odd: each is refused with its reason, or
    read with a warning, or read with its header values checked; pydicom's own test files among them."""
    root = folder / vindr.ROOT
    donor = folder / _donor(manifest, "vindr", transfer_syntax=str(ExplicitVRLittleEndian))["path"]
    train = root / "annotations" / "train.csv"
    study, series = "dead" * 8, "cafe" * 8
    rows: list[list[str]] = []
    cases: list[Case] = []

    def image(n: int, kind: str, expect: str, reason: str = "", arrives: bool = False) -> Path:
        image_id = f"{0x100 + n:032x}"
        rows.append([study, series, image_id, "rad1", "No finding", "", "", "", ""])
        cases.append(Case("vindr", kind, f"{vindr.ROOT}/train_images/{image_id}.dicom", expect, reason,
                          image_id=_image_id("vindr", image_id), arrives=arrives))
        return root / "train_images" / f"{image_id}.dicom"

    def edited(n: int, kind: str, expect: str, reason: str, edit, arrives: bool) -> None:
        ds = _dataset(donor)
        pixels = np.roll(ds.pixel_array, 7 * n, axis=0)  # pixels of its own
        ds.PixelData = pixels.astype("<u2").tobytes()
        edit(ds, pixels)
        _save(ds, image(n, kind, expect, reason, arrives))

    def malformed_header(ds: pydicom.Dataset, _: np.ndarray) -> None:
        for keyword, value in (("ViewPosition", f"{HEADER_MARKER}^VIEW"), ("Modality", HEADER_MARKER),
                               ("VOILUTFunction", HEADER_MARKER), ("WindowCenter", f"{HEADER_MARKER}\\1"),
                               ("PixelSpacing", "1e999\\0.1")):
            tag = Tag(keyword)
            raw = value.encode() + b" " * (len(value) % 2)
            ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)

    def float_pixels(nan: bool):
        def edit(ds: pydicom.Dataset, pixels: np.ndarray) -> None:
            values = pixels.astype(np.float32) / 7.0
            if nan:
                values[:5] = np.nan
            del ds.PixelData, ds.PixelRepresentation
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
            ds.FloatPixelData = values.astype("<f4").tobytes()
        return edit

    def two_frames(ds: pydicom.Dataset, pixels: np.ndarray) -> None:
        ds.NumberOfFrames = 2
        ds.PixelData = np.stack([pixels, pixels[::-1]]).astype("<u2").tobytes()

    def padded(ds: pydicom.Dataset, pixels: np.ndarray) -> None:
        ds.PixelData = pixels.astype("<u2").tobytes() + bytes(2 * pixels.shape[1])  # one row of padding

    edited(1, "header_values_malformed", "accept", "", malformed_header, True)
    edited(2, "photometric_not_a_term", "reject", r"^PhotometricInterpretation is missing or not a DICOM "
           r"defined term$", lambda ds, _: setattr(ds, "PhotometricInterpretation", f"{HEADER_MARKER}PI"), False)
    edited(3, "float32_dicom", "accept", "", float_pixels(nan=False), True)
    edited(4, "float32_dicom_nan", "warn", r"^[\d,]+ of [\d,]+ pixels are NaN or infinite: shown black$",
           float_pixels(nan=True), True)
    edited(5, "multi_frame_where_one_is_read", "warn", r"^multi-frame file \(2 frames\): only frame 0 is used$",
           two_frames, True)
    edited(6, "padded_pixel_data", "warn", r"^pixel data has \d+ bytes of trailing padding: ignored$",
           padded, True)
    gray = (_dataset(donor).pixel_array >> 4).astype(np.uint8)
    Image.fromarray(gray[::-1]).save(image(7, "png_named_dicom", "warn", r"^the content is PNG but the name "
                                           r"says \.dicom: read as PNG$", True), format="PNG")
    _deflated_bomb(donor, image(8, "deflate_bomb", "reject", r"^deflated dataset inflates to more than "
                                                            r"[\d,]+ bytes \(a decompression bomb\)"))
    for n, (name, kind, expect, reason) in enumerate((
            ("MR_small_padded.dcm", "pydicom_mr_small_padded", "warn", r"trailing padding: ignored$"),
            ("JPEG-lossy.dcm", "pydicom_12_bit_jpeg_extended", "accept", "")), start=9):
        shutil.copyfile(get_testdata_file(name), image(n, kind, expect, reason, True))
    _append_rows(train, rows)
    return cases


# --- the replica's own rejects, removed -----------------------------------------------------------------


def remove_planted_rejects(raw: Path, manifest: dict) -> None:
    """Delete every file and row the replica planted to be rejected, so the ingest rejects nothing.

    Raises KeyError for an edge-case kind it does not know: a new planted reject must be taught here.
    """
    removers = {
        "missing_csv": _delete_file,
        "duplicate_copy": _delete_file,
        "truncated_dicom": _delete_rsna_slice,
        "not_dicom": _delete_rsna_slice,
        "degenerate_box": _delete_degenerate_rows,
    }
    for case in manifest["edge_cases"]:
        if case["expect"] == "reject":
            if case["kind"] not in removers:
                raise KeyError(f"remove_planted_rejects does not know edge case kind {case['kind']!r}")
            removers[case["kind"]](raw / case["source"], case)


def _delete_file(folder: Path, case: dict) -> None:
    (folder / case["path"]).unlink()


def _delete_rsna_slice(folder: Path, case: dict) -> None:
    (folder / case["path"]).unlink()
    study, series, instance = case["image_key"].split("/")
    table = folder / rsna.ROOT / rsna_reader.MARKER
    header, *rows = _read_rows(table)
    kept = [row for row in rows if row[:3] != [study, series, instance]]
    assert len(kept) < len(rows), case
    _write_rows(table, [header, *kept])


def _delete_degenerate_rows(folder: Path, case: dict) -> None:
    table = folder / case["path"]
    header, *rows = _read_rows(table)
    names = {name: i for i, name in enumerate(header)}

    def degenerate(row: list[str]) -> bool:
        box = [row[names[name]] for name in ("xmin", "ymin", "xmax", "ymax")]
        return row[names["image_id"]] == case["image_key"] and "" not in box and (
            float(box[0]) >= float(box[2]) or float(box[1]) >= float(box[3]))

    kept = [row for row in rows if not degenerate(row)]
    assert len(kept) < len(rows), case
    _write_rows(table, [header, *kept])
