"""Peak memory of one image at the reading limits of build/imaging.py, and of the bombs they refuse.

    python -m benchmarks.memory_caps [--scratch DIR]

Writes each file into a scratch folder, then standardizes it in a fresh Python process and prints that
process's peak RSS (VmHWM) and the part above its imports: the figure the module docstring promises
(about 1 GB per image at most). Files: a frame at MAX_PIXELS (16-bit with a window, with a rescale, RGB,
32-bit float, 16-bit PNG), a native DICOM of MAX_FILE_BYTES with a deferred private element, a deflated
DICOM inflating to just under the cap, and the bombs: a 1 MB deflated DICOM with a 1 GB private element
and a 9400 x 9400 frame. Takes about a minute and ~2 GB of disk in the scratch folder.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from build.imaging import MAX_FILE_BYTES, MAX_PIXELS

# VmHWM (peak RSS) of the child itself: ru_maxrss would carry over the parent's peak across exec on Linux
CHILD = r"""
import json, sys
from pathlib import Path
from build.imaging import ImageError, standardize_file
def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
imports = peak_kib()
try:
    image = standardize_file(Path(sys.argv[1]))
    result = f"accepted {image.source_width}x{image.source_height}"
except ImageError as error:
    result = f"refused: {error}"
peak = peak_kib()
print(json.dumps({"peak_mb": round(peak / 1024), "above_imports_mb": round((peak - imports) / 1024),
                  "result": result[:110]}))
"""


def dicom(side: int, *, samples: int = 1, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8, 8, 7) if samples == 3 else (16, 12, 11)
    ds.PixelRepresentation = 0
    return ds


def write_files(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    side = math.isqrt(MAX_PIXELS)
    files: dict[str, Path] = {}

    def save(name: str, ds: Dataset) -> None:
        files[name] = folder / f"{name}.dcm"
        ds.save_as(files[name], enforce_file_format=True)

    gray = rng.integers(0, 4096, (side, side), dtype=np.uint16)
    ds = dicom(side)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = gray.tobytes()
    save(f"limit_{side}x{side}_16bit_window", ds)
    del ds.WindowCenter, ds.WindowWidth
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    save(f"limit_{side}x{side}_16bit_rescale", ds)
    rgb_side = math.isqrt(MAX_PIXELS // 3)
    ds = dicom(rgb_side, samples=3)
    ds.PixelData = rng.integers(0, 256, (rgb_side, rgb_side, 3), dtype=np.uint8).tobytes()
    save(f"limit_{rgb_side}x{rgb_side}_rgb", ds)
    ds = dicom(side)
    del ds.PixelRepresentation
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.FloatPixelData = rng.random((side, side), dtype=np.float32).tobytes()
    save(f"limit_{side}x{side}_float32", ds)
    files[f"limit_{side}x{side}_png16"] = folder / "limit_png16.png"
    Image.fromarray(gray).save(files[f"limit_{side}x{side}_png16"], format="PNG", compress_level=1)

    ds = dicom(512)
    ds.PixelData = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
    ds.private_block(0x0009, "MEMCAPS", create=True).add_new(0x01, "OB", bytes(MAX_FILE_BYTES - (1 << 20)))
    save("file_at_limit_with_private_element", ds)
    ds = dicom(512, syntax=DeflatedExplicitVRLittleEndian)
    ds.PixelData = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
    ds.private_block(0x0009, "MEMCAPS", create=True).add_new(0x01, "OB", bytes(MAX_FILE_BYTES - (2 << 20)))
    save("deflated_inflating_to_the_limit", ds)
    ds.private_block(0x0009, "MEMCAPS", create=True).add_new(0x01, "OB", bytes(1 << 30))
    save("bomb_deflated_1GB_private_element", ds)
    ds = dicom(9400)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = rng.integers(0, 4096, (9400, 9400), dtype=np.uint16).tobytes()
    save("bomb_9400x9400_16bit", ds)
    return files


def measure(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", type=Path, help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        files = write_files(Path(scratch))
        print(f"MAX_PIXELS {MAX_PIXELS:,} values, MAX_FILE_BYTES {MAX_FILE_BYTES:,} bytes")
        print(f"{'file':42} {'size MB':>8} {'peak MB':>8} {'above imports':>14}  result")
        for name, path in files.items():
            figures = measure(path)
            print(f"{name:42} {path.stat().st_size / 2**20:8.1f} {figures['peak_mb']:8} "
                  f"{figures['above_imports_mb']:14}  {figures['result']}")


if __name__ == "__main__":
    main()
