"""The on-disk layouts people actually get when they download a release (docs/sources.md, first section).

Each source module writes its tree in its first layout; `apply` then moves it into another one: the same
files, bytes and pixels, only placed, nested or zipped differently. A reader must give identical records
for every layout of a source; the manifest's paths follow the move (`<archive>.zip/<member>` inside a zip).

    buu    twice (BUU-LSPINE_400/BUU-LSPINE_400/), once (BUU-LSPINE_400/), zip (BUU-LSPINE_400.zip)
    csxa   csv (the placeholder: metadata.csv + images/ + annotations/), scidb (Science Data Bank's
           datasets.xlsx + datasets-PNG.zip + datasets-JSON.zip), scidb-unzipped (the same, zips unpacked)
    rsna   nested (the competition folder), flat (Kaggle's zip unpacked here), zip-flat (Kaggle's zip),
           zip-nested (a zip holding the competition folder)
    vindr  zip-folder (PhysioNet's zip unpacked: one long folder), wget (PhysioNet's `wget -r -N -c -np`
           mirror: physionet.org/files/vindr-spinexr/1.0.0/), zip (PhysioNet's zip, not unpacked)
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl

from build.replicas import buu, csxa, rsna, vindr
from build.replicas.phantom import fixed_zip

LAYOUTS: dict[str, tuple[str, ...]] = {
    "buu": ("twice", "once", "zip"),
    "csxa": ("csv", "scidb", "scidb-unzipped"),
    "rsna": ("nested", "flat", "zip-flat", "zip-nested"),
    "vindr": ("zip-folder", "wget", "zip"),
}
DEFAULT = {source: variants[0] for source, variants in LAYOUTS.items()}
WGET = "physionet.org/files/vindr-spinexr/1.0.0"
ZIP_DATE = (2024, 1, 1, 0, 0, 0)
SCIDB_COLUMNS = ("ID", "Gender", "Age", "Pixel spacing (mm)", "Group", "Curvature")  # [U]: our guess

Rename = Callable[[str], str]  # old path (relative to RAW/<source>) -> new path, as reports name it


def parse(choices: list[str] | None) -> dict[str, str]:
    """`["vindr=wget", "rsna=zip-flat"]` -> the full layout (defaults for the rest); ValueError if unknown."""
    layout = dict(DEFAULT)
    for choice in choices or ():
        source, _, variant = choice.partition("=")
        if variant not in LAYOUTS.get(source, ()):
            options = "; ".join(f"{s}={'|'.join(v)}" for s, v in LAYOUTS.items())
            raise ValueError(f"unknown layout {choice!r}; choose SOURCE=VARIANT from {options}")
        layout[source] = variant
    return layout


def apply(folder: Path, source: str, variant: str) -> Rename:
    """Move RAW/<source> (written in the default layout) into `variant`; returns how paths changed."""
    return {"buu": _buu, "csxa": _csxa, "rsna": _rsna, "vindr": _vindr}[source](folder, variant)


def _same(path: str) -> str:
    return path


def _prefix(old: str, new: str) -> Rename:
    """Paths at or below `old` move below `new` ("" for the source folder itself)."""
    def rename(path: str) -> str:
        if path != old and not path.startswith(old + "/"):
            return path
        return "/".join(part for part in (new, path[len(old):].lstrip("/")) if part)
    return rename


def _move(folder: Path, old: str, new: str) -> Rename:
    """Move folder/old to folder/new ("": its files straight into the source folder)."""
    staging = folder.parent / f".{folder.name}.moving"
    shutil.move(folder / old, staging)
    _prune(folder, (folder / old).parent)
    if new:
        (folder / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, folder / new)
    else:
        for child in staging.iterdir():
            shutil.move(child, folder / child.name)
        staging.rmdir()
    return _prefix(old, new)


def _prune(folder: Path, start: Path) -> None:
    """Remove the empty folders left between `start` and `folder`."""
    for parent in (start, *start.parents):
        if parent == folder or not parent.is_relative_to(folder):
            return
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def zip_folder(source: Path, archive: Path, prefix: str) -> None:
    """Zip every file below `source` as `prefix/<path>` (no prefix: at the top), deterministically, and
    delete `source`."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            name = "/".join(part for part in (prefix, path.relative_to(source).as_posix()) if part)
            out.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), path.read_bytes(),
                         compress_type=zipfile.ZIP_DEFLATED)
    shutil.rmtree(source)


def _zip_root(folder: Path, old: str, archive: str, prefix: str) -> Rename:
    zip_folder(folder / old, folder / archive, prefix)
    _prune(folder, (folder / old).parent)
    inside = f"{archive}/{prefix}" if prefix else archive
    return _prefix(old, inside)


def _buu(folder: Path, variant: str) -> Rename:
    if variant == "once":
        return _move(folder, buu.ROOT, buu.RELEASE)
    if variant == "zip":
        rename = _move(folder, buu.ROOT, buu.RELEASE)
        then = _zip_root(folder, buu.RELEASE, f"{buu.RELEASE}.zip", buu.RELEASE)
        return lambda path: then(rename(path))
    return _same


def _rsna(folder: Path, variant: str) -> Rename:
    if variant == "flat":
        return _move(folder, rsna.ROOT, "")
    if variant == "zip-flat":
        return _zip_root(folder, rsna.ROOT, f"{rsna.ROOT}.zip", "")
    if variant == "zip-nested":
        return _zip_root(folder, rsna.ROOT, f"{rsna.ROOT}.zip", rsna.ROOT)
    return _same


def _vindr(folder: Path, variant: str) -> Rename:
    if variant == "wget":
        return _move(folder, vindr.ROOT, WGET)
    if variant == "zip":
        return _zip_root(folder, vindr.ROOT, f"{vindr.ROOT}.zip", vindr.ROOT)
    return _same


def _csxa(folder: Path, variant: str) -> Rename:
    """scidb: the metadata table becomes datasets.xlsx (ids typed as numbers keep their zeros through a
    `0000000` number format, as a spreadsheet shows them), images and JSONs go into the two zips."""
    if variant == "csv":
        return _same
    root = folder / csxa.ROOT
    metadata = root / "metadata.csv"
    with open(metadata, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    write_scidb_workbook(root / "datasets.xlsx", rows)
    metadata.unlink()
    (root / "images").rename(root / "datasets-PNG")
    (root / "annotations").rename(root / "datasets-JSON")
    renames = {"images": "datasets-PNG", "annotations": "datasets-JSON"}
    if variant == "scidb":
        for name in renames.values():
            zip_folder(root / name, root / f"{name}.zip", name)
        renames = {old: f"{new}.zip/{new}" for old, new in renames.items()}
    steps = [_prefix(f"{csxa.ROOT}/{old}", f"{csxa.ROOT}/{new}") for old, new in renames.items()]
    table = _prefix(f"{csxa.ROOT}/metadata.csv", f"{csxa.ROOT}/datasets.xlsx")

    def rename(path: str) -> str:
        for step in (*steps, table):
            path = step(path)
        return path
    return rename


def write_scidb_workbook(path: Path, rows: list[dict[str, str]]) -> None:
    """The per-image workbook: one sheet, our guess at its columns (the real ones are [U]); no patient id.
    Every other id is a number cell formatted `0000000`, the rest text: both must keep their zeros."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(list(SCIDB_COLUMNS))
    for i, row in enumerate(rows):
        values = [row["image_id"], row["gender"], int(row["age"]), float(row["mm_per_pixel"]), row["group"],
                  row["curvature"]]
        sheet.append(values)
        if i % 2 == 0:
            cell = sheet.cell(row=i + 2, column=1)
            cell.value, cell.number_format = int(row["image_id"]), "0" * len(row["image_id"])
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(fixed_zip(buffer.getvalue()))
