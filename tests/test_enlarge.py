"""The benchmark's release-size replica copy: images grow to each release's sizes, nothing else changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import MRImageStorage, RLELossless
from tiny_dicoms import write_tiny_dicom

from benchmarks.enlarge import release_size_copy
from build.imaging import standardize_file


def test_images_grow_in_their_own_format_and_the_rest_is_copied(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "rsna"  # RSNA: 384-640 px, its own codecs kept
    write_tiny_dicom(raw / "a.dcm", MRImageStorage, "1.2.3.1", BitsStored=12, HighBit=11)
    rle = pydicom.dcmread(raw / "a.dcm")
    rle.PixelData = np.array([[0, 4095], [2048, 100]], np.uint16).tobytes()
    rle.compress(RLELossless, generate_instance_uid=False)
    rle.save_as(raw / "rle.dcm")
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20).save(raw / "b.png")
    (raw / "table.csv").write_text("id,label\n1,x\n")
    (raw / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"junk")

    out = release_size_copy(tmp_path / "raw", tmp_path / "big", size_share=0.1) / "rsna"

    big = pydicom.dcmread(out / "rle.dcm")
    assert 38 <= big.Rows == big.Columns <= 64 and big.file_meta.TransferSyntaxUID == RLELossless
    assert big.pixel_array.max() <= 4095  # stays within BitsStored
    assert 38 <= standardize_file(out / "a.dcm").source_width <= 64
    assert 38 <= max(Image.open(out / "b.png").size) <= 64
    assert (out / "table.csv").read_bytes() == (raw / "table.csv").read_bytes()
    assert (out / "broken.dcm").read_bytes() == (raw / "broken.dcm").read_bytes()
    before = (out / "b.png").stat().st_mtime_ns
    assert release_size_copy(tmp_path / "raw", tmp_path / "big", size_share=0.1) == out.parent  # reused
    assert (out / "b.png").stat().st_mtime_ns == before


def test_release_size_copy_has_each_releases_sizes_and_vindr_as_jpeg_2000(tmp_path: Path) -> None:
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    from benchmarks.enlarge import RELEASE_LONG_SIDES, release_size_copy

    raw = tmp_path / "raw"
    for index in range(12):
        write_tiny_dicom(raw / "vindr" / f"{index}.dicom", MRImageStorage, f"1.2.3.{index}", BitsStored=12,
                         HighBit=11)
    write_tiny_dicom(raw / "rsna" / "1.dcm", MRImageStorage, "1.2.4.1", BitsStored=12, HighBit=11)
    for source in ("csxa", "buu"):
        (raw / source).mkdir()
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20).save(raw / "csxa" / "b.png")
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20).save(raw / "buu" / "a.jpg")
    share = 0.05  # release sizes x 0.05: 100-150 px VinDr, 19-32 px RSNA, so the test stays fast

    out = release_size_copy(raw, tmp_path / "real", size_share=share, processes=2)

    def long_side(path: Path) -> int:
        if path.suffix in (".dicom", ".dcm"):
            ds = pydicom.dcmread(path)
            return max(ds.Rows, ds.Columns)
        return max(Image.open(path).size)

    for source, pattern in (("vindr", "*.dicom"), ("rsna", "*.dcm"), ("csxa", "*.png"), ("buu", "*.jpg")):
        low, high = RELEASE_LONG_SIDES[source]
        for path in (out / source).glob(pattern):
            assert low * share - 1 <= long_side(path) <= high * share + 1, path
    syntaxes = [pydicom.dcmread(path).file_meta.TransferSyntaxUID for path in (out / "vindr").glob("*.dicom")]
    assert set(syntaxes) <= {JPEG2000Lossless, ExplicitVRLittleEndian}
    assert syntaxes.count(JPEG2000Lossless) >= 9  # 90 % of VinDr, as in the release
    assert Image.open(out / "buu" / "a.jpg").format == "JPEG"
    again = release_size_copy(raw, tmp_path / "real-1", size_share=share, processes=1)
    assert all((again / p.relative_to(out)).read_bytes() == p.read_bytes() for p in out.rglob("*.dicom"))
