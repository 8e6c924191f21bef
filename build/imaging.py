"""Any pixel file (DICOM, PNG, JPEG, ...) -> SpineBench's standard image.

The standard image is 8-bit grayscale with its long side capped at `max_side` (never upscaled), stored as
lossless PNG. Every source goes through `standardize_file`, so one set of rules decides what a model sees:

- DICOM (any transfer syntax pydicom + pylibjpeg decode): modality LUT (rescale slope/intercept), then the
  file's VOI LUT sequence or first window, else a percentile window; min-max to 8 bits; MONOCHROME1 is
  inverted after the VOI so bone is bright. A VOI that fails or leaves a flat image falls back to the
  percentile window. Colour DICOMs (RGB, YBR, palette) are reduced to luma.
- Other images (Pillow): 8-bit modes are converted to L as they are; 16-bit and 32-bit modes get the
  percentile window, because a bit shift would leave most X-rays dark and flat. The EXIF orientation is
  not applied: the releases' annotation coordinates refer to the stored pixel grid.

Only the pixels the standard image keeps are decoded: a JPEG 2000 resolution level or a baseline JPEG's
DCT scale still at least the output size, else a full decode box-averaged by an integer factor before the
window (see "decoding only the pixels we keep"). `reduced_decode=False` decodes everything, for comparison.

The format is read from the content, never the file name. Every reason a file cannot be used becomes an
`ImageError` whose message is meant for the stage report. Only `DICOM_WHITELIST` fields leave a DICOM.

Hostile files are refused before they can cost much, so one image costs a worker at most about 1 GB
(measured by benchmarks/memory_caps.py): a file may be at most MAX_FILE_BYTES long, and a deflated DICOM
dataset may inflate to at most that much (measured while streaming, before pydicom inflates it); other
element values above DEFER_SIZE are read only when used (pixel data), so a large private element costs
nothing; a frame may hold at most MAX_PIXELS values (checked from the header, before anything is decoded
or allocated), and windowing one costs about PEAK_BYTES_PER_VALUE bytes per value. Uncompressed pixel
data must be as long as Rows x Columns x samples x bits x frames say: a short one is a truncated file, a
longer one by at least a frame means the dimensions do not describe the data, less than a frame is
padding (allowed by the standard, ignored, warned). A decoder that fails in any way, even with a Rust
panic from a plugin, fails only that file, with a one-line reason: pydicom's plugin tracebacks and what
native decoders print are kept off the terminal. Any other unexpected error while reading a file also
becomes an ImageError naming its type, so one file can never stop a build. Odd but usable files are
read and warned about (`StandardImage.warnings`): several frames where one is read, a name whose
extension says another format, padded pixel data, NaN or infinite float pixels (shown black).

Header values are whitelisted and checked before they leave the file: coded fields keep only DICOM
defined terms, numeric fields only well-formed finite numbers (`_clean_header_value`); a field that fails
is left out and named in `invalid_fields`. No reason quotes a header value.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing, pixel_array
from pydicom.pixels.decoders import gdcm as pydicom_gdcm
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit

try:  # python-gdcm: the fallback decoder (requirements.txt); the build works without it
    import gdcm
except ImportError:  # pragma: no cover - depends on the environment
    gdcm = None

# Fields that describe how the pixels were encoded and how to display them, never who, where or when.
# Patient, study, series, equipment and institution modules are left out entirely (names, ids, UIDs,
# dates, ages, sexes, free-text descriptions); the readers take demographics from the release's own
# tables. Every field here is a coded string or a number.
DICOM_WHITELIST: tuple[str, ...] = (
    "Modality",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "ViewPosition",
)
# Keys this module adds to `StandardImage.header` besides the DICOM_WHITELIST fields.
DERIVED_HEADER_KEYS: tuple[str, ...] = ("format", "mode", "TransferSyntax", "window", "window_failed",
                                        "invalid_fields")
# What each whitelisted field may hold to leave the file (PS3.3 defined terms; anything else is dropped).
MODALITIES = frozenset({
    "CR", "CT", "DX", "MR", "MG", "IO", "PX", "RF", "RG", "XA", "US", "NM", "PT", "OT", "SC", "DG", "ES",
    "XC", "OP", "SM", "MS",
})
PHOTOMETRIC_INTERPRETATIONS = frozenset({
    "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "HSV", "ARGB", "CMYK", "YBR_FULL", "YBR_FULL_422",
    "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT",
})
CODED_FIELDS: dict[str, frozenset[str]] = {
    "Modality": MODALITIES,
    "PhotometricInterpretation": PHOTOMETRIC_INTERPRETATIONS,
    "VOILUTFunction": frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"}),
    "ViewPosition": frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"}),
}
INTEGER_FIELDS = frozenset({"SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                            "Rows", "Columns", "NumberOfFrames"})
# Numeric fields: how many values each may have; spacings must also be positive.
NUMBER_FIELDS: dict[str, tuple[int, int]] = {
    "RescaleSlope": (1, 1), "RescaleIntercept": (1, 1), "WindowCenter": (1, 16), "WindowWidth": (1, 16),
    "PixelSpacing": (2, 2), "ImagerPixelSpacing": (2, 2),
}
POSITIVE_FIELDS = frozenset({"PixelSpacing", "ImagerPixelSpacing"})
DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")  # a DICOM DS value
INTEGER = re.compile(r"[+-]?\d{1,10}")  # a DICOM IS value
MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # "<_io.BytesIO object at 0x7f...>" in decoder messages

DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128
# Pillow modes with more than 8 bits per sample: these need a window, not a conversion.
DEEP_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# ITU-R BT.601 luma in Pillow's 16-bit fixed point: integer maths, so RGB -> gray is exact on any machine
# and an RGB DICOM gives the same gray as the same pixels in an RGB JPEG or PNG.
LUMA_FIXED = np.array([19595, 38470, 7471], np.int64)
PNG_COMPRESS_LEVEL = 6  # fixed so the bytes are reproducible for a given zlib
RESIZE_REDUCING_GAP = 3.0  # box-reduce first, then LANCZOS: ~3x faster, visually equal (Pillow's docs)
# Largest frame accepted, in values (Rows x Columns x samples), e.g. 5656 x 5656 gray. Real radiographs are
# below 30 M pixels. Decoding and windowing a 16-bit frame peaks at ~22 bytes per value above the file
# (benchmarks/memory_caps.py: 1.94 GB for 9400 x 9400), so a frame at this limit costs ~0.7 GB.
MAX_PIXELS = 32_000_000
PEAK_BYTES_PER_VALUE = 22
# Largest file read, and the most a deflated DICOM dataset may inflate to: what one image may bring in.
MAX_FILE_BYTES = 256 << 20
DEFER_SIZE = 1 << 20  # DICOM element values longer than this are read from the file only when used
INFLATE_STEP = 4 << 20  # bytes inflated at a time while measuring a deflated dataset
# Pixel data elements: integer, 32-bit float and 64-bit float pixels.
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Name extensions that promise a format (the content decides; a mismatch is warned about).
EXTENSION_FORMATS = {".dcm": "DICOM", ".dicom": "DICOM", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG",
                     ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
# The Pixel Data tag (7FE0,0010) as it is written in little- and big-endian files.
PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")

Header = dict[str, str | int | float]


class ImageError(Exception):
    """The file cannot be used; the message is the human reason that goes into the stage report."""


@dataclass(frozen=True)
class StandardImage:
    """One standardized image: PNG bytes, sizes, pixel hash, quality figures, whitelisted header."""

    png: bytes
    width: int
    height: int
    source_width: int
    source_height: int
    sha256: str  # see pixel_sha256
    clarity: float  # see clarity()
    contrast: float  # see contrast()
    # DICOM_WHITELIST fields present in the file plus DERIVED_HEADER_KEYS: format (DICOM, PNG, JPEG, ...),
    # mode (Pillow files), TransferSyntax (its name), window (voi_lut | window | percentile |
    # percentile_fallback | none for 8-bit gray or colour kept as stored), window_failed (why the file's
    # VOI was not used: "<voi_lut|window>: <exception type or 'flat output'>").
    header: Header
    facts: dict[str, Any] = field(default_factory=dict)  # what the caller's header_facts took from a DICOM
    warnings: tuple[str, ...] = ()  # odd but usable: one line each, for the stage report


class _VoiFailed(Exception):
    """The file's own VOI could not be used; the percentile window takes over."""


def standardize_file(
    path: Path | bytes,
    frame: int = 0,
    max_side: int = 512,
    percentile_window: tuple[float, float] = (0.5, 99.5),
    header_facts: Callable[[Dataset], dict[str, Any]] | None = None,
    reduced_decode: bool = True,
) -> StandardImage:
    """Read any DICOM or Pillow-readable image and return the standard image; ImageError if unusable.

    `path` may also be the file's bytes (a member of a zipped release, never unzipped to disk).

    `header_facts`, if given, is called on a DICOM's parsed dataset and its result kept as `facts`: a
    reader's facts that live in the header cost no second parse. It must not raise. `reduced_decode=False`
    decodes every pixel: the reference the tests and the benchmark hold the reduced decode against.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    path = path if isinstance(path, bytes) else Path(path)
    notes: list[str] = []
    try:
        _check_file_size(path)
        decode_for = max_side if reduced_decode else None
        with _quiet_decoders():
            if _is_dicom(path):
                pixels, header, facts, source = _read_dicom(path, frame, percentile_window, header_facts, notes,
                                                            decode_for)
            else:
                (pixels, header, source), facts = _read_picture(path, frame, percentile_window, notes,
                                                                decode_for), {}
        notes += _misnamed(path, str(header["format"]))
        return replace(_finish(pixels, header, max_side, facts, source), warnings=tuple(notes))
    except ImageError:
        raise
    except BaseException as exc:  # the last line of defence: a file must never stop the build
        _reraise_interrupts(exc)
        raise ImageError(f"unexpected {type(exc).__name__} while reading the file: {exc}") from exc


def _reraise_interrupts(exc: BaseException) -> None:
    """Ctrl-C and exit requests are not file problems: let them through."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        raise exc


def _is_dicom(path: Path | bytes) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble; anything else is left to Pillow."""
    try:
        with _opened(path) as handle:
            head = handle.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc
    if not head:
        raise ImageError("empty file")
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def _opened(path: Path | bytes) -> BinaryIO:
    """A binary handle on a file, or on bytes already read (pydicom and Pillow take either)."""
    return io.BytesIO(path) if isinstance(path, bytes) else open(path, "rb")


# --- DICOM -------------------------------------------------------------------------------------------


def _read_dicom(path: Path, frame: int, percentile_window: tuple[float, float],
                header_facts: Callable[[Dataset], dict[str, Any]] | None, notes: list[str],
                max_side: int | None = None) -> tuple[np.ndarray, Header, dict[str, Any], Source]:
    """Decode one frame and window it to uint8 as the file asks (see the module docstring).

    With `max_side`, the frame is decoded only as finely as an output of that long side needs (see
    `_decode_stored`); None decodes every pixel. Also returns the full frame's `Source`.
    """
    ds = _dcmread(path)
    syntax = _check_pixel_data(ds, frame, path, notes)
    size = (int(ds.Columns), int(ds.Rows))
    target = _target_size(size, max_side)
    try:
        try:
            stored, at_start = _decode_stored(ds, frame, syntax, target)
        except Exception as exc:
            stored, at_start = _box_downscale(_fallback_decode(path, ds, frame, exc), target), False
        source = Source(*size, sampled_at_start=at_start)
    except ImageError:
        raise
    except BaseException as exc:  # decoder plugins raise their own types; Rust ones may panic
        _reraise_interrupts(exc)
        raise ImageError(f"cannot decode pixel data ({syntax.name}): {_one_line(exc)}") from exc
    if stored.dtype.kind == "f":
        stored = _finite(stored, notes)
    facts = header_facts(ds) if header_facts else {}
    if stored.ndim == 3:
        pixels, window = _colour_to_gray(stored, percentile_window)
        return pixels, {**_dicom_header(ds), "window": window}, facts, source
    pixels, window_fields = _window_monochrome(stored, ds, percentile_window)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        np.subtract(255, pixels, out=pixels)  # low stored values are bright in MONOCHROME1
    return pixels, {**_dicom_header(ds), **window_fields}, facts, source


def _check_pixel_data(ds: Dataset, frame: int, path: Path, notes: list[str]) -> pydicom.uid.UID:
    """Refuse, with a reason, what pydicom would reject with a cryptic message, decode as garbage, or
    try to allocate without bound; note what is odd but usable."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise ImageError("DICOM file meta has no TransferSyntaxUID")
    keyword = next((name for name in PIXEL_KEYWORDS if name in ds), None)
    if keyword is None:
        raise ImageError(_no_pixel_data(ds, path))
    if _clean_header_value("PhotometricInterpretation", ds.get("PhotometricInterpretation")) is None:
        raise ImageError("PhotometricInterpretation is missing or not a DICOM defined term")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageError("missing or invalid Rows/Columns/NumberOfFrames/SamplesPerPixel "
                         f"({type(exc).__name__}; header values are not quoted)") from exc
    if rows < 1 or columns < 1 or frames < 1 or samples < 1:
        raise ImageError(f"impossible dimensions {columns}x{rows} with {frames} frame(s)"
                         + (f" and {samples} samples per pixel" if samples < 1 else ""))
    if rows * columns * samples > MAX_PIXELS:
        raise ImageError(f"declared size {columns}x{rows} ({rows * columns * samples:,} values per frame) "
                         f"exceeds the limit of {MAX_PIXELS:,}: refused before decoding")
    if not 0 <= frame < frames:
        raise ImageError(f"frame {frame} out of range: the file has {frames} frame(s)")
    if frames > 1 and frame == 0:
        notes.append(f"multi-frame file ({frames} frames): only frame 0 is used")
    if not syntax.is_encapsulated:
        try:
            expected = get_expected_length(ds, "bytes")
            bits = int(ds.BitsAllocated)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ImageError(f"invalid pixel description ({type(exc).__name__}; header values are not "
                             "quoted)") from exc
        actual = len(ds[keyword].value)
        if actual < expected:
            raise ImageError(f"truncated DICOM: pixel data {expected - actual} bytes short")
        if actual >= expected + expected // frames:  # a whole frame or more: not padding
            raise ImageError(f"pixel data is {actual} bytes but {columns}x{rows}, {samples} sample(s), "
                             f"{bits} bits, {frames} frame(s) need {expected}: the dimensions do not "
                             "describe the data")
        if actual > expected + expected % 2:  # an odd length is padded to even: that byte is not news
            notes.append(f"pixel data has {actual - expected} bytes of trailing padding: ignored")
    return syntax


def _no_pixel_data(ds: Dataset, path: Path) -> str:
    """'no pixel data', unless the file looks cut off: pydicom silently drops an element that the end of
    the file interrupts, so a truncated download would otherwise read as a file without pixels."""
    if _holds_pixel_data_tag(path):
        return "truncated DICOM: the pixel data element is cut off"
    if len(ds) == 0:
        return "truncated or corrupt DICOM: no data elements after the file meta"
    return "no pixel data"


def _colour_to_gray(rgb: np.ndarray, percentile_window: tuple[float, float]) -> tuple[np.ndarray, str]:
    """Luma; 8-bit colour is display-ready as it is, deeper colour needs the percentile window."""
    luma = (rgb.astype(np.int64) @ LUMA_FIXED + 0x8000) >> 16
    if rgb.dtype == np.uint8:
        return luma.astype(np.uint8), "none"
    return _percentile_window(luma, percentile_window), "percentile"


def _window_monochrome(
    stored: np.ndarray, ds: Dataset, percentile_window: tuple[float, float]
) -> tuple[np.ndarray, Header]:
    """Modality LUT, then the file's VOI stretched min-max, else (or if it fails) the percentile window."""
    try:
        values = apply_modality_lut(stored, ds)
    except Exception as exc:  # malformed rescale or Modality LUT Sequence
        raise ImageError(f"unusable modality LUT: {exc}") from exc
    method = _voi_method(ds)
    if method is None:
        return _percentile_window(values, percentile_window), {"window": "percentile"}
    try:
        windowed = _apply_voi(values, ds, method)
    except _VoiFailed as exc:
        fields = {"window": "percentile_fallback", "window_failed": f"{method}: {exc}"}
        return _percentile_window(values, percentile_window), fields
    return _to_uint8(windowed, windowed.min(), windowed.max()), {"window": method}


def _voi_method(ds: Dataset) -> str | None:
    """Which VOI the file carries; a VOI LUT sequence wins over a window, as in pydicom's apply_voi_lut."""
    lut = ds.get("VOILUTSequence")
    if lut and "LUTDescriptor" in lut[0] and "LUTData" in lut[0]:
        return "voi_lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def _apply_voi(values: np.ndarray, ds: Dataset, method: str) -> np.ndarray:
    """The first VOI of the file; raises _VoiFailed if pydicom rejects it or it flattens a real image."""
    try:
        windowed = apply_voi(values, ds, 0) if method == "voi_lut" else apply_windowing(values, ds, 0)
    except Exception as exc:  # bad widths, LUT descriptors that do not match the data, ...
        raise _VoiFailed(type(exc).__name__) from exc
    if windowed.min() == windowed.max() and values.min() != values.max():
        raise _VoiFailed("flat output")
    return windowed


def _dicom_header(ds: Dataset) -> Header:
    """The whitelisted fields present in the file that hold what they should (see _clean_header_value);
    the names of those that do not are listed in `invalid_fields`, their values are not kept."""
    header: Header = {"format": "DICOM", "TransferSyntax": ds.file_meta.TransferSyntaxUID.name}
    invalid = []
    for keyword in DICOM_WHITELIST:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - a value pydicom cannot even convert is not kept
            invalid.append(keyword)
            continue
        if value is None or value == "":
            continue
        clean = _clean_header_value(keyword, value)
        if clean is None:
            invalid.append(keyword)
        else:
            header[keyword] = clean
    if invalid:
        header["invalid_fields"] = ",".join(invalid)
    return header


def _clean_header_value(keyword: str, value: object) -> str | int | float | None:
    """A whitelisted field's value as plain str/int/float if it is what the field may hold, else None:
    a DICOM defined term for coded fields, a non-negative integer for counts and bit depths, one or more
    well-formed finite numbers for the rest (multi-values backslash-separated, as DICOM writes them)."""
    items = [str(item).strip() for item in value] if isinstance(value, MultiValue) else [str(value).strip()]
    if keyword in CODED_FIELDS:
        return items[0] if len(items) == 1 and items[0] in CODED_FIELDS[keyword] else None
    if keyword in INTEGER_FIELDS:
        return int(items[0]) if len(items) == 1 and INTEGER.fullmatch(items[0]) and int(items[0]) >= 0 else None
    fewest, most = NUMBER_FIELDS[keyword]
    if not fewest <= len(items) <= most or not all(DECIMAL.fullmatch(item) for item in items):
        return None
    numbers = [float(item) for item in items]
    if not all(math.isfinite(number) for number in numbers):
        return None
    if keyword in POSITIVE_FIELDS and not all(number > 0 for number in numbers):
        return None
    return numbers[0] if len(numbers) == 1 else "\\".join(repr(number) for number in numbers)


# --- PNG, JPEG and the rest of Pillow -----------------------------------------------------------------


def _read_picture(
    path: Path | bytes, frame: int, percentile_window: tuple[float, float], notes: list[str],
    max_side: int | None = None,
) -> tuple[np.ndarray, Header, Source]:
    """Decode with Pillow; 8-bit modes convert to L, deeper ones get the percentile window.

    With `max_side`, decoded only as finely as an output of that long side needs (`_draft_picture`, and
    `_box_downscale` before a window).
    Also returns the full image's `Source`.
    """
    try:
        with Image.open(_opened(path) if isinstance(path, bytes) else path) as image:
            size = image.width * image.height
            if size > MAX_PIXELS:
                raise ImageError(f"image too large: {image.width}x{image.height} ({size:,} pixels) "
                                 f"exceeds the limit of {MAX_PIXELS:,}")
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and frame == 0:
                notes.append(f"multi-frame file ({frames} frames): only frame 0 is used")
            image.seek(frame)
            source = Source(*image.size)
            target = _target_size(image.size, max_side)
            _draft_picture(image, target)
            image.load()
            header: Header = {"format": image.format or "unknown", "mode": image.mode}
            if image.mode in DEEP_MODES:
                values = np.asarray(image)
                if values.dtype.kind == "f":
                    values = _finite(values, notes)
                values = _box_downscale(values, target)
                return _percentile_window(values, percentile_window), {**header, "window": "percentile"}, source
            gray = image if image.mode == "L" else image.convert("L")
            return np.asarray(gray), {**header, "window": "none"}, source
    except UnidentifiedImageError as exc:
        raise ImageError("not a DICOM (no 'DICM' at byte 128) or image file") from exc
    except EOFError as exc:
        raise ImageError(f"frame {frame} out of range") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data, unconvertible modes
        raise ImageError(f"unreadable image: {exc}") from exc
    except ImageError:
        raise
    except Exception as exc:  # plugins raise struct.error, IndexError, ... on corrupt files
        raise ImageError(f"unreadable image ({type(exc).__name__}): {exc}") from exc


# --- reading limits, decoder fallback, odd files ---------------------------------------------------------


def _check_file_size(path: Path | bytes) -> None:
    """Nothing is read from a file above MAX_FILE_BYTES: what one image may cost starts with its size."""
    try:
        size = len(path) if isinstance(path, bytes) else path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc
    if size > MAX_FILE_BYTES:
        raise ImageError(f"file is {size:,} bytes, above the limit of {MAX_FILE_BYTES:,}: refused unread")


def _dcmread(path: Path | bytes) -> Dataset:
    """Parse a DICOM file holding only small element values in memory (DEFER_SIZE); a deflated dataset
    is measured first, because pydicom inflates it whole and a 1 MB file can hold gigabytes."""
    try:
        with _opened(path) as handle:
            meta = pydicom.filereader.read_file_meta_info(handle)
    except Exception:  # noqa: BLE001 - dcmread below says what is wrong with the file
        meta = None
    if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        _check_inflated_size(path, meta)
    try:
        return pydicom.dcmread(_opened(path) if isinstance(path, bytes) else path, defer_size=DEFER_SIZE)
    except Exception as exc:  # malformed files raise anything from EOFError to struct.error
        raise ImageError(f"unreadable DICOM: {_one_line(exc)}") from exc


def _check_inflated_size(path: Path | bytes, meta: Dataset) -> None:
    """Inflate the dataset after the file meta in steps, keeping nothing, and refuse it once it passes
    MAX_FILE_BYTES; a stream zlib rejects is left to pydicom to report."""
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise ImageError("deflated DICOM without FileMetaInformationGroupLength: its dataset cannot be found")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    with _opened(path) as handle:
        handle.seek(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC) + 12 + int(group_length))  # 12: the length element
        while (chunk := handle.read(INFLATE_STEP)) and not inflater.eof:
            while chunk and not inflater.eof:  # after the end, bytes such as the even-length pad remain
                try:
                    inflated += len(inflater.decompress(chunk, INFLATE_STEP))
                except zlib.error:
                    return
                if inflated > MAX_FILE_BYTES:
                    raise ImageError(f"deflated dataset inflates to more than {MAX_FILE_BYTES:,} bytes "
                                     "(a decompression bomb): refused before inflating it")
                chunk = inflater.unconsumed_tail


def _holds_pixel_data_tag(path: Path | bytes) -> bool:
    """Whether the file's body holds a Pixel Data tag, scanned in steps (the file may be large)."""
    tail = b""
    try:
        with _opened(path) as handle:
            handle.seek(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
            while chunk := handle.read(INFLATE_STEP):
                window = tail + chunk
                if any(tag in window for tag in PIXEL_DATA_TAG_BYTES):
                    return True
                tail = window[-3:]
    except OSError:
        return False
    return False


@contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Keep decoder noise off the terminal while a file is read: pydicom logs every failed plugin with a
    traceback and warns about odd values, and native decoders (GDCM's libjpeg, Rust panics) write to file
    descriptor 2. What matters reaches the report as the file's one-line reason or warning."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        logger.setLevel(level)


def _one_line(exc: BaseException) -> str:
    """An exception as one report line: pydicom lists each plugin's failure on a line of its own, and
    Pillow names its buffer by memory address (which would make two runs' reports differ)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return MEMORY_ADDRESS.sub("", f"{type(exc).__name__}: {'; '.join(lines)}")


def _fallback_decode(path: Path, ds: Dataset, frame: int, failure: Exception) -> np.ndarray:
    """The frame decoded by GDCM itself when pydicom's plugins fail on 12-bit JPEG Extended (pydicom's
    GDCM plugin refuses that precision, though python-gdcm decodes it); any other failure is re-raised."""
    bits = int(ds.get("BitsStored") or 8)
    if ds.file_meta.TransferSyntaxUID != JPEGExtended12Bit or bits <= 8 or int(ds.get("SamplesPerPixel") or 1) != 1:
        raise failure
    if gdcm is None:
        raise ImageError(f"cannot decode pixel data (12-bit JPEG Extended): {_one_line(failure)}; python-gdcm "
                         "decodes it (pip install python-gdcm)")
    with _on_disk(path) as name:
        reader = gdcm.ImageReader()
        reader.SetFileName(name)
        read = reader.Read()
    if not read:
        raise ImageError(f"cannot decode pixel data (12-bit JPEG Extended): {_one_line(failure)}; "
                         "gdcm: cannot read the file")
    image = reader.GetImage()
    signed = image.GetPixelFormat().GetPixelRepresentation() == 1
    dtype = np.dtype(np.int16 if signed else np.uint16)
    values = np.frombuffer(image.GetBuffer().encode("utf-8", "surrogateescape"), dtype)
    frames, rows, columns = int(ds.get("NumberOfFrames") or 1), int(ds.Rows), int(ds.Columns)
    if values.size != frames * rows * columns:
        raise ImageError(f"cannot decode pixel data (12-bit JPEG Extended): {_one_line(failure)}; gdcm: "
                         f"{values.size} values for {frames} frame(s) of {columns}x{rows}")
    return values.reshape(frames, rows, columns)[frame]


@contextmanager
def _on_disk(path: Path | bytes) -> Iterator[str]:
    """A file name GDCM can open: the file itself, or a zip member's bytes in a temporary file (GDCM reads
    only files; this fallback is rare enough that the copy costs nothing that matters)."""
    if not isinstance(path, bytes):
        yield str(path)
        return
    with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
        handle.write(path)
        handle.flush()
        yield handle.name


def _gdcm_last() -> None:
    """Installed, python-gdcm would become pydicom's first choice for every compressed syntax; it is kept
    last, so pylibjpeg decodes what it always did (same pixels) and GDCM is only the fallback."""
    for uid in pydicom_gdcm.DECODER_DEPENDENCIES:
        decoder = pydicom.pixels.get_decoder(uid)
        if "gdcm" in decoder.available_plugins:
            decoder.remove_plugin("gdcm")
            decoder.add_plugin("gdcm", ("pydicom.pixels.decoders.gdcm", "_decode_frame"))


_gdcm_last()


def _finite(values: np.ndarray, notes: list[str]) -> np.ndarray:
    """Float pixels: NaN and infinities carry no intensity, so they become the lowest finite value (black
    after the window) and are counted in a warning; a frame without any finite value is refused."""
    finite = np.isfinite(values)
    bad = values.size - int(np.count_nonzero(finite))
    if bad == 0:
        return values
    if bad == values.size:
        raise ImageError("no finite pixel values: every pixel is NaN or infinite")
    lowest = np.min(values, where=finite, initial=np.inf)
    values = values if values.flags.writeable else values.copy()
    np.copyto(values, lowest, where=~finite)
    notes.append(f"{bad:,} of {values.size:,} pixels are NaN or infinite: shown black")
    return values


def _misnamed(path: Path | bytes, content_format: str) -> list[str]:
    """A warning when the name's extension promises another format than the content has (a zip member's
    bytes come without their name: the member was matched by its name already)."""
    if isinstance(path, bytes):
        return []
    named = EXTENSION_FORMATS.get(path.suffix.lower())
    if named is None or named == content_format:
        return []
    return [f"the content is {content_format} but the name says {path.suffix}: read as {content_format}"]


# --- decoding only the pixels we keep -----------------------------------------------------------------
#
# The standard image keeps at most max_side pixels on its long side; the releases store 2-3k pixel
# radiographs. So each frame is decoded at the coarsest resolution that is still at least the output size,
# and the window (its statistics included) and the LANCZOS resize run on that:
# - JPEG 2000, lossless or not: the codestream's wavelet resolution levels, through Pillow's OpenJPEG plugin
#   (`reduce`). pydicom's decoder, pylibjpeg-openjpeg, exposes no reduced decode.
# - Baseline 8-bit JPEG, in a DICOM or a .jpg: libjpeg's DCT scaling to 1/2, 1/4 or 1/8 (Pillow's `draft`).
#   pylibjpeg-libjpeg exposes no scaled decode; 12-bit JPEG is decoded in full (Pillow's libjpeg is 8-bit).
# - Every other syntax (uncompressed, RLE, JPEG-LS, lossless JPEG, deflated, HTJ2K) and PNG/TIFF: no library
#   here decodes them at a reduced size (RLE and PNG code every pixel in sequence; pydicom's decoders have
#   no such option), so the frame is decoded in full, then box-averaged by the integer factor that leaves at
#   least DOWNSCALE_GAP times the output before it is windowed. 8-bit pictures need no window: Pillow's
#   resize box-reduces them itself (RESIZE_REDUCING_GAP).
# A reduced decode that cannot be trusted (header and codestream disagree, colour, an odd stream) is not
# attempted: the full decode runs, and pydicom reconciles or reports whatever disagrees.

J2K_REDUCIBLE = frozenset({JPEG2000Lossless, JPEG2000})
JPEG_REDUCIBLE = frozenset({JPEGBaseline8Bit})
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream starts with SOC then SIZ
J2K_COD, J2K_SOT = b"\xff\x52", b"\xff\x90"
# Box-average a full decode down to at least this many times the output size: LANCZOS then resamples by a
# factor of 2-4, which keeps it within 40 dB of resampling the full image (tests/test_imaging.py).
DOWNSCALE_GAP = 2.0


def _target_size(source_size: tuple[int, int], max_side: int | None) -> tuple[int, int] | None:
    """The output (width, height) a frame of `source_size` gets; None (decode everything) without max_side."""
    return None if max_side is None else capped_size(*source_size, max_side)


def _decode_stored(ds: Dataset, frame: int, syntax: pydicom.uid.UID, target: tuple[int, int] | None
                   ) -> tuple[np.ndarray, bool]:
    """One frame's stored values (RGB for colour), decoded no finer than an output of `target` needs.

    Also says whether each decoded sample sits at the start of the block of pixels it stands for (a
    JPEG 2000 resolution level: the wavelet keeps the even samples) rather than at its centre (box, DCT).
    """
    full_size = (int(ds.Columns), int(ds.Rows))
    if target is not None and target != full_size:
        reduced = _reduced_codec_decode(ds, frame, syntax, target)
        if reduced is not None:
            return reduced, syntax in J2K_REDUCIBLE
    stored = pixel_array(ds, index=frame)  # YBR comes back as RGB
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        stored = apply_color_lut(stored, ds)
    if "ModalityLUTSequence" in ds:  # stored values index a LUT there: averages of them do not
        return stored, False
    return _box_downscale(stored, target), False


def _reduced_codec_decode(ds: Dataset, frame: int, syntax: pydicom.uid.UID, target: tuple[int, int]
                          ) -> np.ndarray | None:
    """The frame at the codec's coarsest level still >= target, or None where that cannot be trusted."""
    if syntax not in J2K_REDUCIBLE | JPEG_REDUCIBLE or int(ds.get("SamplesPerPixel") or 1) != 1:
        return None
    if ds.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    try:
        data = get_frame(ds.PixelData, frame, number_of_frames=int(ds.get("NumberOfFrames") or 1))
        decode = _j2k_reduced if syntax in J2K_REDUCIBLE else _jpeg_reduced
        return decode(data, ds, target)
    except Exception:  # noqa: BLE001 - a broken stream: the full decoder's own error is the one to report
        return None


def _j2k_reduced(codestream: bytes, ds: Dataset, target: tuple[int, int]) -> np.ndarray | None:
    """Decode resolution level r (each level halves both sides) of a one-component codestream."""
    header = _j2k_header(codestream)
    if header is None:
        return None
    width, height, components, precision, signed, levels = header
    # A BitsStored that disagrees with the codestream's precision (VinDr: 12 in the header, 16 in the
    # stream) changes nothing: pydicom, too, returns the values as the codestream holds them. Signedness
    # that disagrees is different: pydicom reinterprets the bits, so its full decode decides.
    if ((width, height) != (int(ds.Columns), int(ds.Rows)) or components != 1
            or precision > int(ds.BitsAllocated) or signed != bool(int(ds.get("PixelRepresentation") or 0))):
        return None
    level = 0
    while level < levels and all(-(-side // 2 ** (level + 1)) >= want for side, want in zip((width, height), target)):
        level += 1
    values, mode = _pillow_j2k_level(codestream, level)
    if values is None or values.shape[1] < target[0] or values.shape[0] < target[1]:
        return None
    mode_bits = 8 if mode == "L" else 16
    # Pillow fills its mode's bits: (value + 2**(p-1) if signed) << (mode bits - p). Undo it.
    values >>= mode_bits - precision
    if signed:
        values -= 1 << (precision - 1)
    return values.astype(f"{'i' if signed else 'u'}{max(1, int(ds.BitsAllocated) // 8)}")


def _pillow_j2k_level(codestream: bytes, level: int) -> tuple[np.ndarray | None, str]:
    """Samples of resolution `level` (int32) and Pillow's mode; (None, "") if neither it nor a finer one decodes.

    OpenJPEG decodes ceil(n / 2**level) samples a side, but Pillow 13 sizes the level round(n / 2**level)
    and refuses ("broken data stream") a side whose remainder is below half: level 2 of 2205 pixels, say.
    So Pillow is handed a side that rounds and ceils alike to OpenJPEG's count; the decoded size is checked,
    and a level that still fails gives way to the next finer one.
    """
    for attempt in range(level, 0, -1):
        power = 1 << attempt
        try:
            with Image.open(io.BytesIO(codestream)) as image:
                samples = tuple(-(-side // power) for side in image.size)
                image.reduce = attempt
                image._size = tuple(count * power - power // 2 for count in samples)  # see the docstring
                image.load()
                if image.size == samples:
                    return np.asarray(image).astype(np.int32), image.mode
        except OSError:
            continue
    return None, ""


def _j2k_header(codestream: bytes) -> tuple[int, int, int, int, bool, int] | None:
    """(width, height, components, precision of the first, signed, decomposition levels) from SIZ and COD."""
    if not codestream.startswith(J2K_SOC_SIZ) or len(codestream) < 43:
        return None
    lsiz, _, x1, y1, x0, y0, *_, components, ssiz = struct.unpack_from(">HHIIIIIIIIHB", codestream, 4)
    position = 4 + lsiz
    while position + 10 <= len(codestream):
        marker, length = codestream[position:position + 2], int.from_bytes(codestream[position + 2:position + 4])
        if marker == J2K_COD:  # Lcod, Scod, progression order, layers (2), MCT, then the number of levels
            return x1 - x0, y1 - y0, components, (ssiz & 0x7F) + 1, bool(ssiz & 0x80), codestream[position + 9]
        if marker == J2K_SOT:
            return None
        position += 2 + length
    return None


def _jpeg_reduced(data: bytes, ds: Dataset, target: tuple[int, int]) -> np.ndarray | None:
    """A monochrome baseline JPEG frame at the DCT scale `_draft_picture` picks; None if it cannot scale."""
    full_size = (int(ds.Columns), int(ds.Rows))
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "JPEG" or image.mode != "L" or image.size != full_size:
            return None
        _draft_picture(image, target)
        if image.size == full_size:
            return None
        image.load()
        return np.asarray(image)


def _draft_picture(image: Image.Image, target: tuple[int, int] | None) -> None:
    """Ask libjpeg for the coarsest DCT scale (1/2, 1/4, 1/8) still >= target; other formats: no-op."""
    if target is not None and image.format == "JPEG" and image.size != target:
        image.draft(image.mode, target)


def _box_downscale(values: np.ndarray, target: tuple[int, int] | None) -> np.ndarray:
    """Mean over k x k blocks, k the largest integer leaving >= DOWNSCALE_GAP x `target` on both sides.

    Integer data is rounded back to its type: half a stored unit, far below what any window resolves.
    """
    if target is None:
        return values
    height, width = values.shape[:2]
    factor = int(min(width / target[0], height / target[1]) / DOWNSCALE_GAP)
    if factor < 2:
        return values
    planes = [values] if values.ndim == 2 else [values[..., band] for band in range(values.shape[2])]
    reduced = [np.asarray(Image.fromarray(plane.astype(np.float32)).reduce(factor)) for plane in planes]
    out = reduced[0] if values.ndim == 2 else np.stack(reduced, axis=-1)
    return (np.rint(out) if values.dtype.kind in "iu" else out).astype(values.dtype)


# --- windowing helpers --------------------------------------------------------------------------------


def _percentile_window(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Stretch the [low, high] percentiles to 0..255; min-max when that range is empty (mostly flat)."""
    low, high = np.percentile(values, window)
    if high <= low:
        low, high = values.min(), values.max()
    return _to_uint8(values, low, high)


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255, clipping outside; a flat range maps to black."""
    if not high > low:
        return np.zeros(values.shape, np.uint8)
    scaled = np.subtract(values, low, dtype=np.float32)
    scaled *= np.float32(255.0 / (high - low))
    np.clip(scaled, 0, 255, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.uint8)


# --- the standard image -------------------------------------------------------------------------------


class Source(NamedTuple):
    """The full frame's size, and how a reduced decode of it samples it (see `_decode_stored`)."""

    width: int
    height: int
    sampled_at_start: bool = False


def _finish(pixels: np.ndarray, header: Header, max_side: int, facts: dict[str, Any],
            source: Source) -> StandardImage:
    """Cap the size, encode the PNG, hash the pixels and measure the quality figures.

    `pixels` may be a reduced decode of the `source` frame: the output size is the full frame's capped
    size either way, so a reduced decode changes how the pixels are made, never their size.
    """
    source_width, source_height = source.width, source.height
    size = capped_size(source_width, source_height, max_side)  # Pillow returns a copy at the same size
    pixels, box = _full_frame_box(pixels, source)
    image = Image.fromarray(pixels)  # uint8, 2-D: mode L
    image = image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=RESIZE_REDUCING_GAP)
    final = np.asarray(image)
    return StandardImage(
        png=_encode_png(image),
        width=image.width,
        height=image.height,
        source_width=source_width,
        source_height=source_height,
        sha256=pixel_sha256(final),
        clarity=clarity(final),
        contrast=contrast(final),
        header=header,
        facts=facts,
    )


def _full_frame_box(pixels: np.ndarray, source: Source) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The whole source frame as a resize box in the pixels of a decode reduced k times (k = 1: all of it).

    A reduced decode has ceil(W/k) pixels, the last covering only what is left of the frame: the box ends at
    W/k, else the image would stretch by up to (k - 1)/W. A JPEG 2000 level's sample i stands at source
    pixel k*i, not at the centre of its block: the box moves by 0.5 - 0.5/k, and one edge column and row are
    repeated so that it stays inside the pixels.
    """
    height, width = pixels.shape
    kx, ky = (max(1, round(full / reduced)) for full, reduced in ((source.width, width), (source.height, height)))
    shift_x, shift_y = (0.5 - 0.5 / k if source.sampled_at_start else 0.0 for k in (kx, ky))
    if shift_x or shift_y:
        pixels = np.pad(pixels, ((0, 1), (0, 1)), mode="edge")
    return pixels, (shift_x, shift_y, source.width / kx + shift_x, source.height / ky + shift_y)


def capped_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the long side at most max_side, aspect kept, integer rounding, never upscaled."""
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    return (
        max(1, (width * max_side + long_side // 2) // long_side),
        max(1, (height * max_side + long_side // 2) // long_side),
    )


def _encode_png(image: Image.Image) -> bytes:
    """Lossless PNG with fixed settings and no metadata chunks, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hex sha256 of b"{height}x{width}:" + the uint8 pixel bytes: identifies pixels whatever the encoding."""
    height, width = pixels.shape
    digest = hashlib.sha256(f"{height}x{width}:".encode())
    digest.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def clarity(pixels: np.ndarray) -> float:
    """Sharpness: variance of the 4-neighbour Laplacian of the final 8-bit image scaled to [0, 1].

    Laplacian L(y, x) = p(y-1, x) + p(y+1, x) + p(y, x-1) + p(y, x+1) - 4 p(y, x), taken on interior pixels
    only (no padding), p = pixel / 255; clarity = population variance of L, rounded to 6 decimals. This is
    the variance-of-Laplacian focus measure (Pech-Pacheco et al., 2000): blur and flat images score near 0,
    fine edges and noise score high; the upper bound is 16 (a one-pixel checkerboard). Dividing by 255**2
    makes it independent of the 8-bit scale. It is measured on the released image, so it compares images
    of the same size class (long side = max_side). Computed with exact integer sums: deterministic.
    """
    p = pixels.astype(np.int16)  # |L| <= 4 * 255: int16 holds every partial sum
    laplacian = p[:-2, 1:-1] + p[2:, 1:-1]
    laplacian += p[1:-1, :-2]
    laplacian += p[1:-1, 2:]
    laplacian -= 4 * p[1:-1, 1:-1]
    return round(_exact_variance(laplacian) / 255**2, 6)


def contrast(pixels: np.ndarray) -> float:
    """RMS contrast: population standard deviation of the final 8-bit intensities / 255, 6 decimals.

    0 for a flat image, 0.5 at most (half black, half white). Chosen over a percentile spread because the
    DICOM path stretches every image to the full 0..255 range, which makes any range-based figure near
    constant. Computed with exact integer sums and a correctly rounded sqrt: deterministic.
    """
    return round(math.sqrt(_exact_variance(pixels)) / 255, 6)


def _exact_variance(values: np.ndarray) -> float:
    """Population variance of uint8 or int16 values from exact sums (no float summation-order drift).

    The sums are taken in float64 but are exact: every value, square and partial sum is an integer below
    2**53, so no addition rounds, in any order. The final arithmetic is on Python integers.
    """
    flat = values.astype(np.float64).ravel()
    count = flat.size
    if count == 0:
        return 0.0
    total, squares = int(flat.sum()), int(np.einsum("i,i->", flat, flat))  # not BLAS: no threads per worker
    return (count * squares - total * total) / (count * count)
