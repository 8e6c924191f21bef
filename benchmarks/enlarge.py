"""A copy of a replica tree whose images have the pixel sizes and codecs of the real releases.

The replicas draw images of 130-260 pixels a side so that tests and the demo stay fast; the real releases
hold 384-3000 pixel images, and VinDr's are JPEG 2000 where the replicas' are mostly uncompressed. Per-image
costs that do not depend on the size weigh far more against a small image's decode and encode than against
a real one's, and a decoder that reads only a resolution level gains nothing on an uncompressed file. So
`release_size_copy` resizes every image to a long side drawn from its release's range (RELEASE_LONG_SIDES) and
re-encodes VinDr as the release is (JPEG 2000 lossless, a few uncompressed); the other images are written back
in their own format and transfer syntax where pydicom can encode it (RLE, JPEG 2000), else uncompressed.

It adds faint noise after the bicubic resize, so PNG and JPEG 2000 see texture rather than smooth ramps.
Everything else is copied as it is, including the planted broken files, which keep failing for their own
reasons. Files are converted by a pool of processes (JPEG 2000 encoding of a 2.5k radiograph takes seconds);
each file's noise is seeded from its path, so a copy does not depend on the number of processes.
"""

from __future__ import annotations

import multiprocessing
import shutil
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

DICOM_MAGIC = b"DICM"
NOISE = 0.004  # standard deviation of the added noise, as a share of the value range
# Long side in pixels of each release's images (benchmarks/README.md, docs/sources.md): VinDr radiographs
# 2-3k, BUU JPEGs 2.1-3.0k, CSXA PNGs ~1.5-2k, RSNA MR slices 384-640.
RELEASE_LONG_SIDES = {"vindr": (2000, 3000), "buu": (2100, 3000), "csxa": (1500, 2000), "rsna": (384, 640)}
VINDR_UNCOMPRESSED_SHARE = 0.1  # the rest of VinDr is JPEG 2000 lossless, as in the release


@dataclass(frozen=True)
class Plan:
    """How the copy resizes and encodes: the releases' sizes times `size_share`."""

    size_share: float = 1.0

    def __call__(self, source: str, width: int, height: int, syntax: UID | None,
                 rng: np.random.Generator) -> tuple[float, UID | None]:
        """(resize factor, transfer syntax to write: None for a picture, or to keep a DICOM's own)."""
        low, high = RELEASE_LONG_SIDES.get(source, (max(width, height),) * 2)
        factor = rng.uniform(low, high) * self.size_share / max(width, height)
        if source == "vindr" and syntax is not None:
            syntax = ExplicitVRLittleEndian if rng.random() < VINDR_UNCOMPRESSED_SHARE else JPEG2000Lossless
        return factor, syntax


def release_size_copy(raw: Path, out: Path, seed: int = 0, size_share: float = 1.0, processes: int = 2) -> Path:
    """Copy `raw` to `out` with the releases' pixel sizes (times `size_share`) and VinDr as JPEG 2000; an
    existing `out` made with the same settings is reused."""
    plan, stamp_text = Plan(size_share=size_share), f"release sizes x{size_share} {seed}"
    stamp = out / ".enlarged"
    if stamp.exists() and stamp.read_text() == stamp_text:
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(raw, out, symlinks=True)
    jobs = [(path, out, plan, seed) for path in sorted(out.rglob("*")) if path.is_file() and not path.is_symlink()]
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.starmap(_enlarge_file, jobs, chunksize=1)
    else:
        for job in jobs:
            _enlarge_file(*job)
    stamp.write_text(stamp_text)
    return out


def _enlarge_file(path: Path, root: Path, plan: Plan, seed: int) -> None:
    relative = path.relative_to(root).as_posix()
    rng = np.random.default_rng([seed, zlib.crc32(relative.encode())])
    with open(path, "rb") as handle:
        is_dicom = handle.read(132)[128:] == DICOM_MAGIC
    with warnings.catch_warnings():  # VinDr's hex UIDs and the planted oddities are expected, not news
        warnings.simplefilter("ignore")
        try:
            (_enlarge_dicom if is_dicom else _enlarge_picture)(path, relative.split("/")[0], plan, rng)
        except Exception:  # noqa: BLE001 - tables, and the planted broken images: left exactly as they are
            pass


def _resize(frame: np.ndarray, factor: float, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    rows, columns = frame.shape
    size = (max(1, round(columns * factor)), max(1, round(rows * factor)))
    values = np.asarray(Image.fromarray(frame.astype(np.float32), "F").resize(size, Image.Resampling.BICUBIC))
    values = values + rng.normal(0, NOISE * (high - low), values.shape)
    return np.clip(np.rint(values), low, high)


def _enlarge_dicom(path: Path, source: str, plan: Plan, rng: np.random.Generator) -> None:
    ds = pydicom.dcmread(path)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return
    factor, syntax = plan(source, int(ds.Columns), int(ds.Rows), ds.file_meta.TransferSyntaxUID, rng)
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
            ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless else "",
                        generate_instance_uid=False)
        except Exception:  # noqa: BLE001 - no encoder for this syntax here: stored uncompressed
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _enlarge_picture(path: Path, source: str, plan: Plan, rng: np.random.Generator) -> None:
    with Image.open(path) as image:
        image.load()
    if image.mode not in ("L", "RGB", "I;16"):  # CMYK, palette and other edge cases keep their own size
        return
    factor, _ = plan(source, image.width, image.height, None, rng)
    high, dtype = (65535, np.uint16) if image.mode == "I;16" else (255, np.uint8)
    bands = [_resize(np.asarray(band), factor, 0, high, rng).astype(dtype) for band in image.split()]
    enlarged = Image.merge(image.mode, [Image.fromarray(band) for band in bands]) if len(bands) > 1 \
        else Image.fromarray(bands[0])
    enlarged.save(path, format=image.format, **({"quality": 90} if image.format == "JPEG" else {}))
