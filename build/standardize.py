"""Convert the named DICOM, PNG or JPEG files to SpineBench's standard image and write them as PNG.

Each usable FILE becomes DIR/<stem>.png: 8-bit grayscale, long side capped (the profile's max_side unless
--max-side is given), windowed as in build/imaging.py. One line per file says what was written, with the
window used and the quality figures, or why the file was refused; a bad file never stops the others.
Exit code 0 when every file was written, 1 when any was refused.

Example:
  python -m build standardize raw/vindr/train_images/*.dicom --out /tmp/look --max-side 1024
"""

from __future__ import annotations

import argparse
from pathlib import Path

from build import config
from build.imaging import ImageError, StandardImage, standardize_file

COMMAND = "standardize"
HELP = "convert DICOM/PNG/JPEG files to standard 8-bit grayscale PNGs (to inspect the windowing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="DICOM, PNG or JPEG files")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the PNGs")
    parser.add_argument("--max-side", type=int, metavar="N",
                        help="long side cap in pixels (default: the profile's)")
    parser.add_argument("--frame", type=int, default=0, metavar="I", help="frame of multi-frame files")
    parser.add_argument("--profile", default="paper", help="build profile in configs/profiles.yaml")


def main(args: argparse.Namespace) -> int:
    imaging = config.profile(args.profile)["imaging"]
    max_side = args.max_side or imaging["max_side"]
    window = tuple(imaging["percentile_window"])
    args.out.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    for path in args.files:
        target = args.out / f"{path.stem}.png"
        try:
            if target in written:
                raise ImageError(f"{target} was already written from another file of the same stem")
            image = standardize_file(path, frame=args.frame, max_side=max_side, percentile_window=window)
        except ImageError as exc:
            print(f"refused {path}: {exc}")
            continue
        target.write_bytes(image.png)
        written.add(target)
        print(f"written {target} {describe(image)}")
    refused = len(args.files) - len(written)
    print(f"standardize: {len(written)} written, {refused} refused")
    return 1 if refused else 0


def describe(image: StandardImage) -> str:
    """Size, window method and quality figures, as the per-file line shows them."""
    return (
        f"{image.width}x{image.height} window={image.header['window']}"
        f" clarity={image.clarity:.6f} contrast={image.contrast:.6f}"
    )
