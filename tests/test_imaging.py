"""build.imaging: every pixel file becomes the same kind of standard image, or an ImageError with a reason."""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from build.imaging import (
    DERIVED_HEADER_KEYS,
    DICOM_WHITELIST,
    ImageError,
    StandardImage,
    capped_size,
    clarity,
    contrast,
    pixel_sha256,
    standardize_file,
)

AIR, SOFT, BONE = 50, 300, 900  # phantom intensities in 10-bit units; MONOCHROME2: bone has high values


def phantom(height: int = 48, width: int = 64) -> np.ndarray:
    """A tiny 'anatomy': air background, a soft-tissue block and a bone bar inside it."""
    image = np.full((height, width), AIR, np.int64)
    image[8:40, 8:56] = SOFT
    image[16:32, 24:40] = BONE
    return image


def masks(image: np.ndarray) -> dict[str, np.ndarray]:
    return {"air": image == AIR, "soft": image == SOFT, "bone": image == BONE}


def write_dicom(path: Path, stored: np.ndarray, *, bits_stored: int = 16, signed: bool = False,
                photometric: str = "MONOCHROME2", syntax: str = ExplicitVRLittleEndian,
                **attributes: object) -> Path:
    """A minimal valid DICOM file; `stored` is (rows, cols) or (frames, rows, cols) stored values."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def pixels_of(image: StandardImage) -> np.ndarray:
    with Image.open(io.BytesIO(image.png)) as png:
        assert png.mode == "L"
        return np.asarray(png)


def save_picture(path: Path, array: np.ndarray, mode: str | None = None, **options: object) -> Path:
    picture = Image.fromarray(array)
    (picture.convert(mode) if mode else picture).save(path, **options)
    return path


# --- bundled pydicom files ---------------------------------------------------------------------------

BUNDLED = {  # name: (width, height, window) of the standard image at max_side 512
    "MR_small.dcm": (64, 64, "window"),
    "CT_small.dcm": (128, 128, "percentile"),  # rescale, no window
    "MR_small_RLE.dcm": (64, 64, "window"),
    "MR_small_jp2klossless.dcm": (64, 64, "window"),
    "MR_small_jpeg_ls_lossless.dcm": (64, 64, "window"),
    "JPEG2000.dcm": (128, 512, "percentile"),  # 1024 rows: capped
    "693_J2KI.dcm": (512, 512, "window"),  # 14-bit signed JPEG 2000
    "SC_rgb_jpeg_gdcm.dcm": (100, 100, "none"),  # RGB, JPEG Lossless process 14
    "SC_rgb_rle_16bit.dcm": (100, 100, "percentile"),  # 16-bit RGB
    "examples_ybr_color.dcm": (320, 240, "none"),  # YBR_FULL_422, 30 frames
    "examples_palette.dcm": (512, 224, "percentile"),  # PALETTE COLOR with 16-bit entries
    "6154": (16, 16, "window"),  # CR, MONOCHROME1, 12 bits stored
}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_dicoms_standardize(name):
    width, height, window = BUNDLED[name]
    image = standardize_file(Path(get_testdata_file(name)))
    pixels = pixels_of(image)
    assert (image.width, image.height) == (width, height) == pixels.shape[::-1]
    assert image.header["format"] == "DICOM" and image.header["window"] == window
    assert pixels.min() < pixels.max()
    assert image.sha256 == pixel_sha256(pixels)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_bundled_lossless_syntaxes_equal_the_uncompressed_file(name):
    reference = standardize_file(Path(get_testdata_file("MR_small.dcm")))
    assert standardize_file(Path(get_testdata_file(name))).sha256 == reference.sha256


def test_bundled_rgb_16_bit_matches_its_8_bit_twin():
    eight = standardize_file(Path(get_testdata_file("SC_rgb_rle.dcm")))
    sixteen = standardize_file(Path(get_testdata_file("SC_rgb_rle_16bit.dcm")))
    assert eight.header["window"] == "none" and sixteen.sha256 == eight.sha256


def test_colour_dicom_becomes_the_same_luma_as_pillow_gives():
    path = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")
    rgb = pydicom.dcmread(path).pixel_array
    assert np.ptp(rgb.astype(int)[..., 0] - rgb[..., 1]) > 100  # really coloured
    np.testing.assert_array_equal(pixels_of(standardize_file(Path(path))), Image.fromarray(rgb).convert("L"))


def test_bundled_monochrome1_is_the_inverse_of_the_same_file_read_as_monochrome2(tmp_path):
    source = Path(get_testdata_file("6154"))
    ds = pydicom.dcmread(source)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "as_mono2.dcm")
    mono1 = pixels_of(standardize_file(source))
    mono2 = pixels_of(standardize_file(tmp_path / "as_mono2.dcm"))
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_bundled_truncated_file_is_refused():
    with pytest.raises(ImageError, match=r"^truncated DICOM: pixel data 62 bytes short$"):
        standardize_file(Path(get_testdata_file("MR_truncated.dcm")))


# --- photometric interpretation ----------------------------------------------------------------------


def test_monochrome1_and_monochrome2_of_the_same_anatomy_match_with_bone_bright(tmp_path):
    anatomy = phantom() * 4  # 12-bit
    mono2 = write_dicom(tmp_path / "mono2.dcm", anatomy, bits_stored=12)
    mono1 = write_dicom(tmp_path / "mono1.dcm", 4095 - anatomy, bits_stored=12, photometric="MONOCHROME1")
    out2, out1 = standardize_file(mono2), standardize_file(mono1)
    assert out1.header["window"] == out2.header["window"] == "percentile"
    assert out1.sha256 == out2.sha256
    pixels, regions = pixels_of(out1), masks(phantom())
    assert (pixels[regions["bone"]] == 255).all() and (pixels[regions["air"]] == 0).all()


def test_monochrome1_window_is_inverted_after_the_voi(tmp_path):
    anatomy = phantom() * 4
    mono2 = write_dicom(tmp_path / "mono2.dcm", anatomy, bits_stored=12, WindowCenter=1600, WindowWidth=2800)
    mono1 = write_dicom(tmp_path / "mono1.dcm", 4095 - anatomy, bits_stored=12, photometric="MONOCHROME1",
                        WindowCenter=4095 - 1600, WindowWidth=2800)
    out2, out1 = pixels_of(standardize_file(mono2)), pixels_of(standardize_file(mono1))
    assert np.abs(out1.astype(int) - out2).max() <= 1  # LINEAR windows are off by half a step when mirrored
    assert out1[masks(phantom())["bone"]].min() >= 254


# --- VOI: window, VOI LUT sequence, percentile, fallback ---------------------------------------------


def ramp(height: int = 64, width: int = 64, top: int = 4000) -> np.ndarray:
    return np.linspace(0, top, height * width).round().astype(np.int64).reshape(height, width)


def test_window_saturates_outside_and_is_used(tmp_path):
    image = standardize_file(write_dicom(tmp_path / "w.dcm", ramp(), WindowCenter=2000, WindowWidth=1000))
    pixels = pixels_of(image).ravel()
    values = ramp().ravel()
    assert image.header["window"] == "window"
    assert (pixels[values <= 1400] == 0).all() and (pixels[values >= 2600] == 255).all()
    middle = pixels[(values > 1800) & (values < 2200)]
    assert middle.size and (middle > 0).all() and (middle < 255).all()


def test_multi_valued_window_uses_the_first(tmp_path):
    first = write_dicom(tmp_path / "first.dcm", ramp(), WindowCenter=2000, WindowWidth=1000)
    both = write_dicom(tmp_path / "both.dcm", ramp(), WindowCenter=[2000, 500], WindowWidth=[1000, 200])
    second = write_dicom(tmp_path / "second.dcm", ramp(), WindowCenter=500, WindowWidth=200)
    assert standardize_file(both).sha256 == standardize_file(first).sha256
    assert standardize_file(both).sha256 != standardize_file(second).sha256


def voi_lut_item(entries: int, data: list[int]) -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [entries, 0, 16])
    item.add_new("LUTData", "US", data)
    return item


def test_voi_lut_sequence_is_used_and_wins_over_the_window(tmp_path):
    step = [0] * 2048 + [1000] * 2048  # a LUT no window could mimic: two output levels
    path = write_dicom(tmp_path / "lut.dcm", ramp(top=4095), VOILUTSequence=[voi_lut_item(4096, step)],
                       WindowCenter=2000, WindowWidth=4000)
    image = standardize_file(path)
    pixels = pixels_of(image)
    assert image.header["window"] == "voi_lut"
    assert set(np.unique(pixels)) == {0, 255}
    np.testing.assert_array_equal(pixels == 255, ramp(top=4095) >= 2048)


def test_percentile_window_when_the_file_has_no_voi(tmp_path):
    values = ramp(top=1000)
    values[0, 0] = 60000  # one hot pixel must not squash the image into black
    image = standardize_file(write_dicom(tmp_path / "p.dcm", values))
    bulk = pixels_of(image)[values <= 1000]
    assert image.header["window"] == "percentile"
    assert bulk.min() == 0 and np.percentile(bulk, 99) >= 250
    min_max = standardize_file(tmp_path / "p.dcm", percentile_window=(0.0, 100.0))
    assert pixels_of(min_max)[values <= 1000].max() <= 5


@pytest.mark.parametrize(
    ("attributes", "failed"),
    [
        ({"WindowCenter": 500, "WindowWidth": 0}, "window: ValueError"),
        ({"WindowCenter": 100000, "WindowWidth": 10}, "window: flat output"),
        ({"VOILUTSequence": [voi_lut_item(4096, [0, 1, 2])]}, "voi_lut: "),
    ],
)
def test_a_broken_voi_falls_back_to_the_percentile_window(tmp_path, attributes, failed):
    path = write_dicom(tmp_path / "broken.dcm", ramp(), **attributes)
    image = standardize_file(path)
    assert image.header["window"] == "percentile_fallback"
    assert str(image.header["window_failed"]).startswith(failed)
    assert image.sha256 == standardize_file(write_dicom(tmp_path / "plain.dcm", ramp())).sha256


# --- stored values: bit depth, sign, rescale, frames, compression ------------------------------------


def test_any_bits_stored_signed_or_unsigned_gives_the_same_image(tmp_path):
    shas = set()
    for bits in (10, 12, 14, 16):
        scaled = phantom() << (bits - 10)
        unused_high_bits = (0xFFFF << bits) & 0xFFFF  # garbage above BitsStored must be ignored
        unsigned = write_dicom(tmp_path / f"u{bits}.dcm", scaled | unused_high_bits, bits_stored=bits)
        signed = write_dicom(tmp_path / f"s{bits}.dcm", scaled - 2 ** (bits - 1), bits_stored=bits,
                             signed=True)
        shas |= {standardize_file(unsigned).sha256, standardize_file(signed).sha256}
    assert len(shas) == 1


def test_rescale_slope_and_intercept_are_applied_before_the_window(tmp_path):
    stored = np.where(phantom() == AIR, 100, np.where(phantom() == SOFT, 600, 1200))
    window = {"WindowCenter": 1000, "WindowWidth": 2000}
    rescaled = write_dicom(tmp_path / "r.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000, **window)
    by_hand = write_dicom(tmp_path / "h.dcm", stored * 2 - 1000, signed=True, **window)
    ignored = write_dicom(tmp_path / "i.dcm", stored, **window)
    assert standardize_file(rescaled).sha256 == standardize_file(by_hand).sha256
    assert standardize_file(rescaled).sha256 != standardize_file(ignored).sha256


def test_multi_frame_takes_the_requested_frame(tmp_path):
    frames = np.stack([ramp(), ramp()[::-1], ramp().T])
    path = write_dicom(tmp_path / "frames.dcm", frames)
    single = write_dicom(tmp_path / "single.dcm", frames[1])
    assert standardize_file(path, frame=1).sha256 == standardize_file(single).sha256
    assert standardize_file(path).sha256 != standardize_file(single).sha256
    with pytest.raises(ImageError, match=r"frame 3 out of range: the file has 3 frame"):
        standardize_file(path, frame=3)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
@pytest.mark.parametrize("signed", [False, True])
def test_lossless_compression_decodes_to_the_uncompressed_image(tmp_path, syntax, signed):
    stored = phantom() * 4 + ramp(48, 64, top=300) - (2048 if signed else 0)
    plain = write_dicom(tmp_path / "plain.dcm", stored, bits_stored=12, signed=signed)
    packed = write_dicom(tmp_path / "packed.dcm", stored, bits_stored=12, signed=signed, syntax=syntax)
    image = standardize_file(packed)
    assert image.header["TransferSyntax"] == syntax.name
    assert image.sha256 == standardize_file(plain).sha256


# --- refusals ----------------------------------------------------------------------------------------


def test_truncated_dicom_says_how_many_bytes_are_missing(tmp_path):
    whole = write_dicom(tmp_path / "whole.dcm", phantom()).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(whole[:-100])
    with pytest.raises(ImageError, match=r"^truncated DICOM: pixel data 100 bytes short$"):
        standardize_file(tmp_path / "cut.dcm")


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", phantom())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageError, match=r"^no pixel data$"):
        standardize_file(path)


def test_dicom_with_impossible_dimensions(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", phantom())
    ds = pydicom.dcmread(path)
    ds.Rows = 0
    ds.save_as(path)
    with pytest.raises(ImageError, match=r"^impossible dimensions 64x0"):
        standardize_file(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", r"^empty file$"),
        (np.random.default_rng(1).bytes(4000), r"^not a DICOM .* or image file$"),
        (bytes(128) + b"DICM" + np.random.default_rng(2).bytes(400), r"."),
    ],
    ids=["zero-bytes", "random-bytes", "dicm-then-garbage"],
)
def test_unusable_bytes_are_refused_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "scan.dcm"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        standardize_file(path)


def test_missing_file_and_truncated_jpeg_are_refused(tmp_path):
    with pytest.raises(ImageError, match=r"^cannot read file"):
        standardize_file(tmp_path / "absent.dcm")
    whole = save_picture(tmp_path / "x.jpg", ramp(200, 300, top=255).astype(np.uint8)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match=r"^unreadable image: image file is truncated"):
        standardize_file(tmp_path / "cut.jpg")


# --- PNG and JPEG ------------------------------------------------------------------------------------


def test_8_bit_grayscale_png_keeps_its_values(tmp_path):
    values = ramp(40, 60, top=200).astype(np.uint8)
    image = standardize_file(save_picture(tmp_path / "g.png", values))
    assert image.header == {"format": "PNG", "mode": "L", "window": "none"}
    np.testing.assert_array_equal(pixels_of(image), values)


def test_16_bit_png_gets_a_percentile_window_not_a_shift(tmp_path):
    values = ramp(60, 80, top=4000).astype(np.uint16)
    values[0, 0] = 65535
    path = save_picture(tmp_path / "deep.png", values)
    with Image.open(path) as check:
        assert check.mode == "I;16"
    image = standardize_file(path)
    bulk = pixels_of(image)[values <= 4000]
    assert image.header["mode"] == "I;16" and image.header["window"] == "percentile"
    assert bulk.min() == 0 and np.percentile(bulk, 99) >= 250  # a >>8 shift would top out at 15


def test_rgb_png_of_a_gray_image_equals_the_gray_image(tmp_path):
    values = ramp(40, 60, top=255).astype(np.uint8)
    image = standardize_file(save_picture(tmp_path / "rgb.png", values, "RGB"))
    assert image.header["mode"] == "RGB"
    np.testing.assert_array_equal(pixels_of(image), values)


@pytest.mark.parametrize("mode", ["RGB", "CMYK"])
def test_colour_jpegs_keep_dark_dark_and_bright_bright(tmp_path, mode):
    values = np.full((60, 80), 30, np.uint8)
    values[:, 40:] = 220
    image = standardize_file(save_picture(tmp_path / f"{mode}.jpg", values, mode, quality=95))
    pixels = pixels_of(image)
    assert image.header == {"format": "JPEG", "mode": mode, "window": "none"}
    assert abs(pixels[:, :36].mean() - 30) < 6 and abs(pixels[:, 44:].mean() - 220) < 6


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "1"])
def test_palette_alpha_and_bilevel_pngs(tmp_path, mode):
    values = ramp(40, 60, top=255).astype(np.uint8)
    path = save_picture(tmp_path / f"{mode}.png", values, mode)
    with Image.open(path) as source:
        expected = np.asarray(source.convert("L"))
    image = standardize_file(path)
    assert image.header["mode"] == mode
    np.testing.assert_array_equal(pixels_of(image), expected)


def test_format_comes_from_content_not_extension(tmp_path):
    png_named_dcm = save_picture(tmp_path / "really_png.dcm", phantom().astype(np.uint8), format="PNG")
    assert standardize_file(png_named_dcm).header["format"] == "PNG"
    dicom_named_jpg = write_dicom(tmp_path / "really_dicom.jpg", phantom())
    assert standardize_file(dicom_named_jpg).header["format"] == "DICOM"


# --- size, determinism, hash -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [((1000, 600), 512, (512, 307)), ((300, 900), 512, (171, 512)), ((300, 200), 512, (300, 200)),
     ((300, 200), 100, (100, 67)), ((5000, 3), 512, (512, 1))],
)
def test_long_side_capped_aspect_kept_never_upscaled(tmp_path, size, max_side, expected):
    width, height = size
    values = ramp(height, width, top=255).astype(np.uint8)
    image = standardize_file(save_picture(tmp_path / "s.png", values), max_side=max_side)
    assert (image.width, image.height) == expected == pixels_of(image).shape[::-1]
    assert (image.source_width, image.source_height) == size
    assert capped_size(width, height, max_side) == expected


def test_max_side_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        standardize_file(save_picture(tmp_path / "s.png", phantom().astype(np.uint8)), max_side=0)


def png_chunk_types(data: bytes) -> list[bytes]:
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        types.append(data[offset + 4:offset + 8])
        offset += 12 + length
    return types


def test_deterministic_png_without_metadata_and_a_pixel_hash(tmp_path):
    path = write_dicom(tmp_path / "d.dcm", np.tile(ramp(), (12, 10)), WindowCenter=2000, WindowWidth=3000)
    first, second = standardize_file(path), standardize_file(path)
    assert first == second
    assert set(png_chunk_types(first.png)) == {b"IHDR", b"IDAT", b"IEND"}
    pixels = pixels_of(first)
    expected = hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode() + pixels.tobytes()).hexdigest()
    assert first.sha256 == expected


def test_pickles_for_a_process_pool(tmp_path):
    image = standardize_file(write_dicom(tmp_path / "d.dcm", phantom()))
    assert pickle.loads(pickle.dumps(image)) == image
    error = pickle.loads(pickle.dumps(ImageError("no pixel data")))
    assert isinstance(error, ImageError) and str(error) == "no pixel data"


# --- no PHI ------------------------------------------------------------------------------------------


def test_only_whitelisted_header_fields_and_no_phi(tmp_path):
    marker = "ZZPHIMARKER"
    path = write_dicom(
        tmp_path / "phi.dcm", phantom(), WindowCenter=500, WindowWidth=1000,
        PatientName=f"{marker}^Jane", PatientID=f"{marker}01", PatientBirthDate="19500101",
        PatientAge="074Y", PatientSex="F", InstitutionName=f"{marker} Hospital", StudyDate="20240101",
        AccessionNumber=f"{marker}02", ReferringPhysicianName=f"{marker}^Doc", StudyDescription=marker,
        StudyInstanceUID="1.2.3.4.99999", BodyPartExamined="LSPINE", ViewPosition="AP",
        PixelSpacing=[0.14, 0.14],
    )
    image = standardize_file(path)
    assert set(image.header) <= set(DICOM_WHITELIST) | set(DERIVED_HEADER_KEYS)
    assert image.header["ViewPosition"] == "AP" and image.header["PixelSpacing"] == "0.14\\0.14"
    text = repr(image.header) + repr(image)
    for secret in (marker, "19500101", "20240101", "074Y", "1.2.3.4.99999", "LSPINE"):
        assert secret not in text and secret.encode() not in image.png
    assert "PatientSex" not in image.header


# --- quality figures ---------------------------------------------------------------------------------


def test_quality_figures_follow_their_definitions():
    flat = np.full((32, 32), 77, np.uint8)
    assert clarity(flat) == 0.0 and contrast(flat) == 0.0
    halves = np.zeros((32, 32), np.uint8)
    halves[:, 16:] = 255
    assert contrast(halves) == 0.5
    checkerboard = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert clarity(checkerboard) == 16.0 and contrast(checkerboard) == 0.5
    noisy = np.random.default_rng(3).integers(0, 256, (50, 70)).astype(np.uint8)
    p = noisy / 255.0
    laplacian = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    assert clarity(noisy) == pytest.approx(laplacian.var(), abs=1e-6)
    assert contrast(noisy) == pytest.approx(p.std(), abs=1e-6)
    assert clarity(noisy) == round(clarity(noisy), 6)


def test_blur_lowers_clarity(tmp_path):
    sharp = np.zeros((64, 64), np.uint8)
    sharp[:, ::8] = 255
    blurred = np.asarray(Image.fromarray(sharp).resize((16, 16)).resize((64, 64), Image.Resampling.BILINEAR))
    sharp_image = standardize_file(save_picture(tmp_path / "sharp.png", sharp))
    blurred_image = standardize_file(save_picture(tmp_path / "blurred.png", blurred))
    assert sharp_image.clarity > blurred_image.clarity


# --- reduced decode: only the pixels the standard image keeps ------------------------------------------
#
# The agreement measure: the standard image from a reduced decode against the one from a full decode of the
# same file (same window rule, same resize, same encoder), over the 8-bit pixels: Pearson correlation
# >= 0.999 (structure) and PSNR >= 40 dB (values). Measured on these cases: correlation 0.9995-0.9999,
# PSNR 42-52 dB. One exception, stated: a window wider than the data is stretched min-max (the module's
# rule), and the extremes of a noisy image are what averaging changes most, so there PSNR >= 35 dB
# (measured 38-41 dB: a 1-2 % difference of contrast, which correlation ignores and PSNR counts).
# Window bounds are held separately to WINDOW_TOLERANCE.

REDUCED_SIDE = 256
# The 0.5/99.5 percentiles, and a window's min-max, sit in the tails of the pixel noise; averaging 2x2 or
# 4x4 pixels halves or quarters that noise, which pulls the tails in by up to ~2 noise standard deviations.
# With radiograph-like noise (1 % of the range) that is at most 2 % of the window width here (measured
# 0-1.9 %), about 5 of 255 grey levels at the extremes and less in between: far finer than the step between
# the window presets a reader picks from (10 % of the width or more). The tolerance leaves 1 % for noise.
WINDOW_TOLERANCE = 0.03


def radiograph(height: int, width: int, bits: int, seed: int = 0, signed: bool = False) -> np.ndarray:
    """Smooth anatomy-like gradients, a bright 'spine', small round 'vertebrae' and 1 % noise, in `bits`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = 0.2 + 0.3 * x + 0.4 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.05)
    image += 0.3 * ((np.abs(x - 0.5) < 0.05) & (np.abs(y - 0.4) < 0.3))
    for k in range(10):
        image += 0.15 * (((x - 0.3 - 0.03 * k) ** 2 + (y - 0.2 - 0.05 * k) ** 2) < 0.0004)
    image += rng.normal(0, 0.01, image.shape)
    values = np.clip(image / image.max(), 0, 1) * (2**bits - 1)
    return np.rint(values - (2 ** (bits - 1) if signed else 0)).astype(np.int64)


def jpeg_dicom(path: Path, gray: np.ndarray, photometric: str = "MONOCHROME2") -> Path:
    """A baseline-JPEG DICOM: Pillow's JPEG of `gray` (uint8) encapsulated as pydicom writes it."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    write_dicom(path, gray, bits_stored=8, photometric=photometric)
    ds = pydicom.dcmread(path)
    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return path


def reduced_cases(tmp_path: Path) -> dict[str, tuple[Path, tuple[int, int] | None]]:
    """One file per codec the replicas (and the releases) use: (path, the reduced decode's size, if any)."""
    h, w = 900, 1100
    image12 = radiograph(h, w, 12)
    image8 = radiograph(h, w, 8).astype(np.uint8)
    quarter, half = (275, 225), (550, 450)  # J2K level 2 and JPEG 1/4 (ceil of 1100/4, 900/4); a 2x2 box
    return {
        "uncompressed": (write_dicom(tmp_path / "u.dcm", image12, bits_stored=12), half),
        "uncompressed window": (write_dicom(tmp_path / "uw.dcm", image12, bits_stored=12, WindowCenter=2500,
                                            WindowWidth=2000), half),
        "uncompressed, window wider than the data": (write_dicom(tmp_path / "uww.dcm", image12, bits_stored=12,
                                                                 WindowCenter=2000, WindowWidth=6000), half),
        "JPEG 2000, window wider than the data": (write_dicom(tmp_path / "jww.dcm", image12, bits_stored=12,
                                                              syntax=JPEG2000Lossless, WindowCenter=2000,
                                                              WindowWidth=6000), quarter),
        "RLE": (write_dicom(tmp_path / "r.dcm", image12, bits_stored=12, syntax=RLELossless), half),
        "JPEG 2000 lossless": (write_dicom(tmp_path / "j.dcm", image12, bits_stored=12, syntax=JPEG2000Lossless),
                               quarter),
        "JPEG 2000 window": (write_dicom(tmp_path / "jw.dcm", image12, bits_stored=12, syntax=JPEG2000Lossless,
                                         WindowCenter=2500, WindowWidth=2000), quarter),
        "JPEG 2000 MONOCHROME1": (write_dicom(tmp_path / "j1.dcm", image12, bits_stored=12,
                                              syntax=JPEG2000Lossless, photometric="MONOCHROME1"), quarter),
        "JPEG 2000 signed 16-bit": (write_dicom(tmp_path / "js.dcm", radiograph(h, w, 16, signed=True),
                                                bits_stored=16, signed=True, syntax=JPEG2000Lossless), quarter),
        "JPEG in DICOM": (jpeg_dicom(tmp_path / "jd.dcm", image8), quarter),
        "JPEG file": (save_picture(tmp_path / "p.jpg", image8, quality=90), quarter),
        "RGB JPEG file": (save_picture(tmp_path / "rgb.jpg", image8, "RGB", quality=90), quarter),
        "PNG 8-bit": (save_picture(tmp_path / "p.png", image8), None),  # no reduced decode, no window
        "PNG 16-bit": (save_picture(tmp_path / "p16.png", radiograph(h, w, 16).astype(np.uint16)), half),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_reduced_decode_agrees_with_the_full_decode_on_every_codec(tmp_path):
    for name, (path, _) in reduced_cases(tmp_path).items():
        full = standardize_file(path, max_side=REDUCED_SIDE, reduced_decode=False)
        reduced = standardize_file(path, max_side=REDUCED_SIDE)
        a, b = pixels_of(full), pixels_of(reduced)
        assert a.shape == b.shape == (209, 256), name  # the output size of the full frame, whatever is decoded
        assert (reduced.source_width, reduced.source_height) == (1100, 900), name
        assert reduced.header == full.header, name
        correlation = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        least_psnr = 35 if "wider than the data" in name else 40
        assert correlation >= 0.999 and psnr(a, b) >= least_psnr, (name, correlation, psnr(a, b))


def test_reduced_decode_decodes_fewer_pixels(tmp_path):
    """The agreement above would hold trivially if nothing were reduced: each codec's decoded size."""
    from build import imaging

    for name, (path, size) in reduced_cases(tmp_path).items():
        if imaging._is_dicom(path):
            pixels = imaging._read_dicom(path, 0, (0.5, 99.5), None, [], REDUCED_SIDE)[0]
        else:
            pixels = imaging._read_picture(path, 0, (0.5, 99.5), [], REDUCED_SIDE)[0]
        assert pixels.shape[::-1] == (size or (1100, 900)), name


def test_reduced_jpeg2000_keeps_stored_values_sign_and_bits(tmp_path):
    """Pillow hands JPEG 2000 samples shifted to 16 bits and offset if signed: undone, the level equals the
    4x4 block means of the full decode up to the wavelet's own rounding."""
    from build import imaging

    for bits, signed in ((12, False), (16, True), (8, False)):
        stored = radiograph(400, 520, bits, signed=signed)
        path = write_dicom(tmp_path / f"{bits}{signed}.dcm", stored, bits_stored=bits, signed=signed,
                           syntax=JPEG2000Lossless)
        ds = pydicom.dcmread(path)
        level2, at_start = imaging._decode_stored(ds, 0, JPEG2000Lossless, (128, 98))
        assert at_start
        assert level2.shape == (100, 130) and level2.dtype == (np.int16 if signed else np.uint16)
        blocks = stored.reshape(100, 4, 130, 4).mean(axis=(1, 3))
        assert np.abs(level2 - blocks).mean() < 0.01 * 2**bits, (bits, signed)


@pytest.mark.parametrize("stream_bits, header_bits", [(16, 12), (12, 16)])
def test_bits_stored_disagreeing_with_the_codestream_decodes_what_pydicom_decodes(tmp_path, stream_bits, header_bits):
    """VinDr's header can say 12 bits over a 16-bit codestream: the values are the codestream's either way."""
    from build import imaging

    path = write_dicom(tmp_path / "j.dcm", radiograph(400, 520, 12), bits_stored=stream_bits, syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = header_bits, header_bits - 1
    level2 = imaging._reduced_codec_decode(ds, 0, JPEG2000Lossless, (128, 98))
    blocks = pydicom.pixels.pixel_array(ds).reshape(100, 4, 130, 4).mean(axis=(1, 3))
    assert level2 is not None and np.abs(level2 - blocks).mean() < 0.01 * 4096


def test_signedness_disagreeing_with_the_codestream_gets_pydicoms_full_decode(tmp_path):
    """pydicom reinterprets the bits when PixelRepresentation contradicts the codestream: it decides."""
    from build import imaging

    path = write_dicom(tmp_path / "j.dcm", radiograph(400, 520, 12), bits_stored=12, syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    ds.PixelRepresentation = 1
    assert imaging._reduced_codec_decode(ds, 0, JPEG2000Lossless, (128, 98)) is None
    stored, at_start = imaging._decode_stored(ds, 0, JPEG2000Lossless, (128, 98))
    assert not at_start and stored.dtype == np.int16
    assert np.array_equal(stored, imaging._box_downscale(pydicom.pixels.pixel_array(ds), (128, 98)))


def test_window_chosen_on_the_reduced_image_matches_the_full_resolution_one(tmp_path):
    """Percentile bounds, and a VOI's min-max stretch, from the reduced decode against the full decode."""
    from build import imaging

    window = (0.5, 99.5)
    for name, (path, size) in reduced_cases(tmp_path).items():
        if not imaging._is_dicom(path) or size is None:
            continue
        ds = pydicom.dcmread(path)
        syntax = ds.file_meta.TransferSyntaxUID
        full = apply_modality(ds, imaging._decode_stored(ds, 0, syntax, None)[0])
        reduced = apply_modality(ds, imaging._decode_stored(ds, 0, syntax, (REDUCED_SIDE, 209))[0])
        if "WindowCenter" in ds:
            full, reduced = (pydicom.pixels.apply_windowing(v, ds) for v in (full, reduced))
            bounds_full, bounds_reduced = (full.min(), full.max()), (reduced.min(), reduced.max())
        else:
            bounds_full, bounds_reduced = np.percentile(full, window), np.percentile(reduced, window)
        width = bounds_full[1] - bounds_full[0]
        assert np.abs(np.subtract(bounds_full, bounds_reduced)).max() <= WINDOW_TOLERANCE * width, name


def apply_modality(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    return pydicom.pixels.apply_modality_lut(stored, ds)


def test_reduced_decode_is_byte_deterministic(tmp_path):
    for name, (path, _) in reduced_cases(tmp_path).items():
        first, second = (standardize_file(path, max_side=REDUCED_SIDE) for _ in range(2))
        assert first.png == second.png and first.sha256 == second.sha256, name


def test_small_images_are_decoded_as_before(tmp_path):
    """Nothing to reduce when the frame already fits: the very bytes of the full decode."""
    path = write_dicom(tmp_path / "j.dcm", radiograph(300, 400, 12), bits_stored=12, syntax=JPEG2000Lossless)
    assert standardize_file(path).png == standardize_file(path, reduced_decode=False).png


def test_jpeg2000_side_of_one_modulo_four_still_decodes_at_level_2(tmp_path):
    """Pillow sizes a level by rounding where OpenJPEG takes the ceiling: 1101 = 4 x 275 + 1 would fail."""
    from build import imaging

    path = write_dicom(tmp_path / "odd.dcm", radiograph(902, 1101, 12), bits_stored=12, syntax=JPEG2000Lossless)
    pixels = imaging._read_dicom(path, 0, (0.5, 99.5), None, [], REDUCED_SIDE)[0]
    assert pixels.shape == (226, 276)  # ceil(902 / 4), ceil(1101 / 4)
    a = pixels_of(standardize_file(path, max_side=REDUCED_SIDE, reduced_decode=False))
    b = pixels_of(standardize_file(path, max_side=REDUCED_SIDE))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.999 and psnr(a, b) >= 40
