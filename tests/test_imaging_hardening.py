"""build.imaging under hostile and odd files: bounded reads, checked header values, float pixels, padded
pixel data, the GDCM fallback, quiet decoders, and warnings for odd but usable files."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from build import imaging
from build.imaging import (
    CODED_FIELDS,
    DICOM_WHITELIST,
    INTEGER_FIELDS,
    NUMBER_FIELDS,
    ImageError,
    standardize_file,
)
from test_imaging import phantom, pixels_of, write_dicom

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def resave(path: Path, **attributes: object) -> Path:
    """The DICOM at `path` with attributes set; a text value is stored as its raw bytes, as a hostile
    writer would (pydicom would refuse to build 'abc' as a decimal)."""
    with pydicom.config.disable_value_validation():
        ds = pydicom.dcmread(path)
        for keyword, value in attributes.items():
            if isinstance(value, str):
                tag = Tag(keyword)
                raw = value.encode() + b" " * (len(value) % 2)
                ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)
    return path


# --- bounded reads ----------------------------------------------------------------------------------


def deflated_dicom(path: Path, private_bytes: int) -> Path:
    """A valid deflated DICOM carrying a private OB element of `private_bytes` zeros (it deflates to
    almost nothing: the shape of a decompression bomb)."""
    write_dicom(path, phantom())
    with pydicom.config.disable_value_validation():
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.private_block(0x0009, "HARDENING", create=True).add_new(0x01, "OB", bytes(private_bytes))
        ds.save_as(path, enforce_file_format=True)
    return path


def test_a_deflated_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """The cap is lowered to 1 MB so the bomb is small; the refusal comes from the streamed count."""
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1 << 20)
    bomb = deflated_dicom(tmp_path / "bomb.dcm", 4 << 20)
    assert bomb.stat().st_size < 64 << 10
    inflated = []
    real_dcmread = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: inflated.append(a) or real_dcmread(*a, **k))
    with pytest.raises(ImageError, match=r"^deflated dataset inflates to more than 1,048,576 bytes \(a "
                                         r"decompression bomb\): refused before inflating it$"):
        standardize_file(bomb)
    assert not inflated  # pydicom never got to inflate it


@pytest.mark.parametrize("private_bytes", [0, 3 << 20, (3 << 20) + 1])  # odd: the stream ends in a pad byte
def test_a_deflated_file_below_the_cap_is_read(tmp_path, private_bytes):
    path = deflated_dicom(tmp_path / "ok.dcm", private_bytes)
    image = standardize_file(path)
    assert image.header["TransferSyntax"] == "Deflated Explicit VR Little Endian"
    assert (image.width, image.height) == (64, 48) and image.contrast > 0.1


def test_large_elements_are_not_read_unless_used(tmp_path):
    path = write_dicom(tmp_path / "big.dcm", phantom())
    ds = pydicom.dcmread(path)
    ds.private_block(0x0009, "HARDENING", create=True).add_new(0x01, "OB", bytes(imaging.DEFER_SIZE + 2))
    ds.save_as(path)
    seen = {}

    def facts(dataset):
        seen["private"] = dataset.get_item(0x00091001, keep_deferred=True).value
        return {}

    standardize_file(path, header_facts=facts)
    assert seen == {"private": None}  # still deferred: never read into memory


def test_a_file_above_the_size_cap_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    path = write_dicom(tmp_path / "x.dcm", phantom())
    with pytest.raises(ImageError, match=r"^file is [\d,]+ bytes, above the limit of 1,000: refused unread$"):
        standardize_file(path)


def test_a_frame_above_the_pixel_cap_is_refused_from_its_header(tmp_path):
    """9400 x 9400 (the size that took a worker to 2.3 GB) is above the cap; nothing is decoded."""
    path = resave(write_dicom(tmp_path / "x.dcm", phantom()), Rows=9400, Columns=9400)
    with pytest.raises(ImageError, match=r"^declared size 9400x9400 \(88,360,000 values per frame\) exceeds "
                                         r"the limit of 32,000,000: refused before decoding$"):
        standardize_file(path)
    assert imaging.MAX_PIXELS * imaging.PEAK_BYTES_PER_VALUE < 0.75e9  # the promise in the docstring


# --- header values ----------------------------------------------------------------------------------


def test_every_whitelisted_field_has_a_rule():
    rules = set(CODED_FIELDS) | INTEGER_FIELDS | set(NUMBER_FIELDS)
    assert rules == set(DICOM_WHITELIST)


def test_malformed_header_values_are_left_out_and_named(tmp_path):
    path = resave(write_dicom(tmp_path / "x.dcm", phantom()), ViewPosition="PATIENT^JOHN",
                  Modality="XSCRIPTX", VOILUTFunction="EVILFUNC", WindowCenter="abc\\12",
                  WindowWidth="1e999", PixelSpacing="0.5\\-0.5", ImagerPixelSpacing="0.2",
                  RescaleSlope="nan")
    image = standardize_file(path)
    text = json.dumps(image.header)
    for planted in ("JOHN", "XSCRIPTX", "EVILFUNC", "abc", "1e999", "-0.5", "nan"):
        assert planted not in text, planted
    assert image.header["invalid_fields"].split(",") == [
        "Modality", "RescaleSlope", "WindowCenter", "WindowWidth", "VOILUTFunction",
        "PixelSpacing", "ImagerPixelSpacing", "ViewPosition"]
    assert image.contrast > 0.1  # the image is still used (percentile window)


def test_well_formed_header_values_are_kept_as_numbers_and_terms(tmp_path):
    path = resave(write_dicom(tmp_path / "x.dcm", phantom()), ViewPosition="PA", Modality="CR",
                  VOILUTFunction="LINEAR", WindowCenter=["500", "600"], WindowWidth="1000.50",
                  PixelSpacing=["0.1390", "0.1390"], RescaleSlope="1", RescaleIntercept="-1024")
    header = standardize_file(path).header
    assert {key: header[key] for key in ("ViewPosition", "Modality", "VOILUTFunction", "WindowCenter",
                                         "WindowWidth", "PixelSpacing", "RescaleSlope", "RescaleIntercept",
                                         "Rows", "BitsStored")} == {
        "ViewPosition": "PA", "Modality": "CR", "VOILUTFunction": "LINEAR", "WindowCenter": "500.0\\600.0",
        "WindowWidth": 1000.5, "PixelSpacing": "0.139\\0.139", "RescaleSlope": 1.0,
        "RescaleIntercept": -1024.0, "Rows": 48, "BitsStored": 16}
    assert "invalid_fields" not in header


def test_an_unknown_photometric_interpretation_is_refused_without_quoting_it(tmp_path):
    path = resave(write_dicom(tmp_path / "x.dcm", phantom()), PhotometricInterpretation="DOE^JANE")
    with pytest.raises(ImageError) as refused:
        standardize_file(path)
    assert str(refused.value) == "PhotometricInterpretation is missing or not a DICOM defined term"


def test_a_malformed_frame_count_is_refused_without_quoting_it(tmp_path):
    path = resave(write_dicom(tmp_path / "x.dcm", phantom()), NumberOfFrames="7XQ")
    with pytest.raises(ImageError) as refused:
        standardize_file(path)
    assert str(refused.value).startswith("missing or invalid Rows/Columns/NumberOfFrames/SamplesPerPixel")
    assert "7XQ" not in str(refused.value)


# --- float pixels, NaN, padding ---------------------------------------------------------------------


def float_dicom(path: Path, values: np.ndarray) -> Path:
    write_dicom(path, phantom())
    ds = pydicom.dcmread(path)
    del ds.PixelData, ds.PixelRepresentation
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.FloatPixelData = values.astype("<f4").tobytes()
    ds.save_as(path)
    return path


def test_a_32_bit_float_dicom_is_read(tmp_path):
    anatomy = phantom().astype(np.float32) / 1000  # 0.05, 0.3, 0.9
    image = standardize_file(float_dicom(tmp_path / "float.dcm", anatomy))
    pixels = pixels_of(image)
    assert image.header["window"] == "percentile" and image.warnings == ()
    assert pixels[anatomy == 0.05].max() < pixels[anatomy == 0.3].min() < pixels[anatomy == 0.9].min()


def test_nan_pixels_are_shown_black_and_warned_about(tmp_path):
    anatomy = phantom().astype(np.float32)
    anatomy[:4] = np.nan
    anatomy[4, :3] = np.inf
    image = standardize_file(float_dicom(tmp_path / "nan.dcm", anatomy))
    pixels = pixels_of(image)
    assert image.warnings == ("259 of 3,072 pixels are NaN or infinite: shown black",)
    assert pixels[:4].max() == 0 and pixels[16:32, 24:40].min() == 255 and image.contrast > 0.1


def test_a_nan_tiff_is_an_image_and_an_all_nan_one_is_refused(tmp_path):
    values = phantom().astype(np.float32)
    values[:, :10] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    image = standardize_file(tmp_path / "nan.tif")
    assert image.header["mode"] == "F" and image.contrast > 0.1
    assert image.warnings == ("480 of 3,072 pixels are NaN or infinite: shown black",)
    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(tmp_path / "all_nan.tif")
    with pytest.raises(ImageError, match=r"^no finite pixel values: every pixel is NaN or infinite$"):
        standardize_file(tmp_path / "all_nan.tif")


def test_pydicoms_padded_test_file_gives_the_pixels_of_the_unpadded_one():
    plain = standardize_file(Path(get_testdata_file("MR_small.dcm")))
    padded = standardize_file(Path(get_testdata_file("MR_small_padded.dcm")))
    assert padded.sha256 == plain.sha256 and padded.png == plain.png
    assert padded.warnings == ("pixel data has 128 bytes of trailing padding: ignored",)


def test_a_whole_frame_of_excess_is_still_refused(tmp_path):
    path = resave(write_dicom(tmp_path / "x.dcm", phantom()), Rows=24)
    with pytest.raises(ImageError, match=r"the dimensions do not describe the data$"):
        standardize_file(path)


# --- odd but usable files: warned about -------------------------------------------------------------


def test_a_multi_frame_file_read_as_one_frame_is_warned_about(tmp_path):
    path = write_dicom(tmp_path / "frames.dcm", np.stack([phantom(), phantom() * 2, phantom() * 3]))
    assert standardize_file(path).warnings == ("multi-frame file (3 frames): only frame 0 is used",)
    assert standardize_file(path, frame=2).warnings == ()  # a frame asked for: several were expected
    pages = [Image.fromarray(phantom().astype(np.uint8) // 4 * k) for k in (1, 2)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert standardize_file(tmp_path / "pages.tif").warnings == (
        "multi-frame file (2 frames): only frame 0 is used",)


def test_a_png_named_dcm_is_read_and_warned_about(tmp_path):
    Image.fromarray((phantom() // 4).astype(np.uint8)).save(tmp_path / "scan.dcm", format="PNG")
    image = standardize_file(tmp_path / "scan.dcm")
    assert image.header["format"] == "PNG" and image.contrast > 0.1
    assert image.warnings == ("the content is PNG but the name says .dcm: read as PNG",)
    path = write_dicom(tmp_path / "scan.png", phantom())
    assert standardize_file(path).warnings == ("the content is DICOM but the name says .png: read as DICOM",)
    assert standardize_file(write_dicom(tmp_path / "plain", phantom())).warnings == ()  # no extension


# --- decoders: the GDCM fallback, one line per refused file, nothing on the terminal ---------------


JPEG_LOSSY = Path(get_testdata_file("JPEG-lossy.dcm"))  # 12-bit JPEG Extended that pylibjpeg refuses


def test_pylibjpeg_still_refuses_the_12_bit_file():
    """The premise of the fallback: without it this file is lost."""
    with pytest.raises(RuntimeError, match="pylibjpeg"):
        pydicom.pixels.pixel_array(pydicom.dcmread(JPEG_LOSSY), decoding_plugin="pylibjpeg")


def test_12_bit_jpeg_extended_is_decoded_by_gdcm(capfd):
    ds = pydicom.dcmread(JPEG_LOSSY)
    stored = imaging._fallback_decode(JPEG_LOSSY, ds, 0, RuntimeError("pylibjpeg failed"))
    assert stored.shape == (1024, 256) and stored.dtype == np.uint16
    assert (stored[420, 140], stored[230, 120]) == (244, 95)  # pydicom's reference values for this file
    assert "Unsupported JPEG data precision 12" in capfd.readouterr().err  # called bare, GDCM is heard
    image = standardize_file(JPEG_LOSSY)
    assert image.contrast > 0.1 and image.header["BitsStored"] == 12
    assert capfd.readouterr().err == ""  # GDCM's libjpeg complains on fd 2 while it retries at 12 bits


def test_without_gdcm_the_reason_names_the_plugin_that_would_decode_it(monkeypatch):
    monkeypatch.setattr(imaging, "gdcm", None)
    with pytest.raises(ImageError) as refused:
        standardize_file(JPEG_LOSSY)
    reason = str(refused.value)
    assert reason.startswith("cannot decode pixel data (12-bit JPEG Extended): RuntimeError: ")
    assert reason.endswith("; python-gdcm decodes it (pip install python-gdcm)") and "\n" not in reason
    assert "plugins:; pylibjpeg: libjpeg error code" in reason  # pydicom's list of failed plugins, one line


def test_gdcm_is_only_the_fallback():
    """Installed, pydicom would try GDCM first; pylibjpeg stays first, so pixels do not change."""
    for uid in (JPEG2000Lossless, pydicom.uid.JPEGBaseline8Bit, pydicom.uid.JPEGLSLossless):
        plugins = list(pydicom.pixels.get_decoder(uid)._validate_plugins())  # the order pydicom tries
        assert plugins[0] == "pylibjpeg" and plugins[-1] == "gdcm", (uid, plugins)


def test_a_failing_decoder_gives_one_line_and_nothing_on_the_terminal(tmp_path, capfd, caplog):
    """RLE data for twice the rows the header declares: pylibjpeg-rle's Rust code panics (it prints the
    panic on fd 2) and pydicom logs each plugin's traceback."""
    path = resave(write_dicom(tmp_path / "rle.dcm", phantom(), syntax=RLELossless), Rows=24)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageError) as refused:
        standardize_file(path)
    reason = str(refused.value)
    assert reason.startswith("cannot decode pixel data (RLE Lossless): ")
    assert "\n" not in reason and "PanicException: index out of bounds" in reason
    assert capfd.readouterr().err == ""
    assert not [record for record in caplog.records if record.name.startswith("pydicom")]


def test_the_decoder_quieting_is_undone(capfd):
    with imaging._quiet_decoders():
        pass
    import os
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert logging.getLogger("pydicom").level != logging.CRITICAL + 1


def test_a_deflate_stream_that_zlib_rejects_is_one_line_from_pydicom(tmp_path):
    path = deflated_dicom(tmp_path / "broken.dcm", 0)
    meta = pydicom.filereader.read_file_meta_info(path)
    start = 128 + 4 + 12 + meta.FileMetaInformationGroupLength
    data = path.read_bytes()
    path.write_bytes(data[:start] + b"\xff" * (len(data) - start))  # 0xff: an invalid deflate block type
    with pytest.raises(ImageError, match=r"^unreadable DICOM: error: Error -3 while decompressing data"):
        standardize_file(path)


def test_the_cli_prints_one_line_per_refused_file_and_no_traceback(tmp_path):
    """A JPEG without its SOI marker fails in every plugin (pydicom logs each with a traceback, GDCM's
    libjpeg prints to fd 2); RLE data longer than its rows makes pylibjpeg-rle panic."""
    data = bytearray(Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")).read_bytes())
    start = data.index(b"\xff\xd8\xff")
    data[start:start + 3] = bytes(3)
    (tmp_path / "no_soi.dcm").write_bytes(bytes(data))
    rle = resave(write_dicom(tmp_path / "rle.dcm", phantom(), syntax=RLELossless), Rows=24)
    done = subprocess.run([sys.executable, "-m", "build", "-v", "standardize", str(tmp_path / "no_soi.dcm"),
                           str(rle), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[2] == "standardize: 0 written, 2 refused", lines
    assert lines[0].startswith(f"refused {tmp_path / 'no_soi.dcm'}: cannot decode pixel data (JPEG Baseline "
                               "(Process 1)): RuntimeError: Unable to decode as exceptions were raised by all "
                               "available plugins:; pylibjpeg: ")
    assert " at 0x" not in lines[0]  # no memory addresses: reports of two runs are equal
    assert lines[1].startswith(f"refused {rle}: cannot decode pixel data (RLE Lossless): PanicException: ")
