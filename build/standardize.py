"""Convert the named DICOM, PNG or JPEG files to SpineBench's standard image and write them as PNG.

Each usable FILE becomes DIR/<stem>.png: 8-bit grayscale, long side capped (the profile's max_side unless
--max-side is given), windowed as in build/imaging.py. One line per file says what was written, with the
window used and the quality figures, or why the file was refused; a bad file never stops the others.
Exit code 0 when every file was written, 1 when any was refused. A FILE is never overwritten (a PNG whose
output name is itself, or another FILE, is refused), and each PNG is written whole or not at all.

Example:
  python -m build standardize raw/vindr/train_images/*.dicom --out /tmp/look --max-side 1024
"""

from __future__ import annotations

import argparse
from pathlib import Path

from build import config
from build.artifacts import atomic_path
from build.errors import BuildError
from build.imaging import ImageError, StandardImage, standardize_file
from build.report import printable

COMMAND = "standardize"
HELP = "convert DICOM/PNG/JPEG files to standard 8-bit grayscale PNGs (to inspect the windowing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="DICOM, PNG or JPEG files")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the PNGs")
    parser.add_argument("--max-side", type=config.positive, metavar="N",
                        help="long side cap in pixels (default: the profile's)")
    parser.add_argument("--frame", type=int, default=0, metavar="I", help="frame of multi-frame files")
    parser.add_argument("--profile", default="paper", help="build profile in configs/profiles.yaml")


def main(args: argparse.Namespace) -> int:
    if args.frame < 0:
        raise BuildError(f"--frame must be 0 or more, not {args.frame}")
    imaging = config.profile(args.profile)["imaging"]
    max_side = args.max_side or imaging["max_side"]
    window = tuple(imaging["percentile_window"])
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = {path.resolve(): path for path in args.files}
    written: set[Path] = set()
    for path in args.files:
        target = args.out / f"{path.stem}.png"
        try:
            if target in written:
                raise ImageError(f"{target} was already written from another file of the same stem")
            if target.resolve() in inputs:
                raise ImageError(f"its PNG {target} would overwrite the input file "
                                 f"{inputs[target.resolve()]}: choose another --out")
            image = standardize_file(path, frame=args.frame, max_side=max_side, percentile_window=window)
        except ImageError as exc:
            print(printable(f"refused {path}: {exc}"))
            continue
        with atomic_path(target) as tmp:
            tmp.write_bytes(image.png)
        written.add(target)
        print(printable(f"written {target} {describe(image)}"))
    refused = len(args.files) - len(written)
    print(f"standardize: {len(written)} written, {refused} refused")
    return 1 if refused else 0


def describe(image: StandardImage) -> str:
    """Size, window method and quality figures, as the per-file line shows them."""
    return (
        f"{image.width}x{image.height} window={image.header['window']}"
        f" clarity={image.clarity:.6f} contrast={image.contrast:.6f}"
    )
