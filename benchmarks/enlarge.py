"""A copy of a replica tree whose images have the pixel sizes of the real releases.

The replicas draw images of 130-260 pixels a side so that tests and the demo stay fast; the real releases
hold 384-3000 pixel images. Per-image costs that do not depend on the size (reading tables, Parquet rows,
report entries) weigh far more against a small image's decode and encode than against a real one's, so
the benchmark measures the ingest/floor ratio on both. Every image is resized by `factor` (bicubic, then
faint noise so PNG sees texture rather than smooth ramps) and written back in its own format and transfer
syntax where pydicom can encode it (RLE, JPEG 2000), else uncompressed. Everything else is copied as it
is, including the planted broken files, which keep failing for their own reasons.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

DICOM_MAGIC = b"DICM"
NOISE = 0.004  # standard deviation of the added noise, as a share of the value range


def enlarged_copy(raw: Path, out: Path, factor: float, seed: int = 0) -> Path:
    """Copy `raw` to `out` (once: an existing `out` with the same factor is reused), images enlarged."""
    stamp = out / ".enlarged"
    if stamp.exists() and stamp.read_text() == f"{factor} {seed}":
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(raw, out, symlinks=True)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # VinDr's hex UIDs and the planted oddities are expected, not news
        warnings.simplefilter("ignore")
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.is_symlink():
                _enlarge_file(path, factor, rng)
    stamp.write_text(f"{factor} {seed}")
    return out


def _enlarge_file(path: Path, factor: float, rng: np.random.Generator) -> None:
    with open(path, "rb") as handle:
        is_dicom = handle.read(132)[128:] == DICOM_MAGIC
    try:
        (_enlarge_dicom if is_dicom else _enlarge_picture)(path, factor, rng)
    except Exception:  # noqa: BLE001 - tables, and the planted broken images: left exactly as they are
        pass


def _resize(frame: np.ndarray, factor: float, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    rows, columns = frame.shape
    size = (round(columns * factor), round(rows * factor))
    values = np.asarray(Image.fromarray(frame.astype(np.float32), "F").resize(size, Image.Resampling.BICUBIC))
    values = values + rng.normal(0, NOISE * (high - low), values.shape)
    return np.clip(np.rint(values), low, high)


def _enlarge_dicom(path: Path, factor: float, rng: np.random.Generator) -> None:
    ds = pydicom.dcmread(path)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return
    syntax = ds.file_meta.TransferSyntaxUID
    stored = ds.pixel_array
    info = np.iinfo(stored.dtype)
    bits = int(ds.BitsStored)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if info.min < 0 else (0, 2**bits - 1)
    frames = stored if stored.ndim == 3 else stored[None]
    big = np.stack([_resize(frame, factor, low, high, rng) for frame in frames]).astype(stored.dtype)
    ds.set_pixel_data(big if stored.ndim == 3 else big[0], ds.PhotometricInterpretation, bits,
                      generate_instance_uid=False)
    if syntax.is_compressed:
        try:
            ds.compress(syntax, generate_instance_uid=False)
        except Exception:  # noqa: BLE001 - no encoder for this syntax here: stored uncompressed
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _enlarge_picture(path: Path, factor: float, rng: np.random.Generator) -> None:
    with Image.open(path) as image:
        image.load()
    if image.mode not in ("L", "RGB"):  # 16-bit, CMYK and palette edge cases keep their own size
        return
    bands = [_resize(np.asarray(band), factor, 0, 255, rng).astype(np.uint8) for band in image.split()]
    enlarged = Image.merge(image.mode, [Image.fromarray(band) for band in bands])
    enlarged.save(path, format=image.format, **({"quality": 90} if image.format == "JPEG" else {}))
