"""What a user downloads and decodes: lossless image encodings against the stored PNG and the authors' JPEG.

    python -m benchmarks.formats --hub OUT/spinebench [--sample 120] [--out formats.json]

On a built Hub folder (at the releases' pixel sizes for figures that mean anything: benchmarks/enlarge.py),
a sample of its distinct images spread over the files is re-encoded in every candidate the datasets Image
feature (Pillow) and the Hub viewer (a browser) both decode: PNG at other zlib levels and strategies
(Pillow picks each row's PNG filter itself and exposes no other choice), lossless WebP, and the authors'
lossy JPEG q95 for reference. Per candidate: bytes against the stored PNG, encode and decode time per image
(best of `--repeats`, one image at a time as a data loader decodes them), whether the decoded pixels equal
the stored ones and whether encoding twice gives the same bytes. Then each configuration's download: the
Parquet as stored, and projected for each candidate by the sample's size ratio, against the authors' layout
(one JSON of the rows plus one JPEG q95 file per distinct image).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `build` must be this project's package, not PyPA's
    sys.path.insert(0, str(ROOT))

from build.imaging import PNG_COMPRESS_LEVEL  # noqa: E402
from spinebench import CONFIG_NAMES  # noqa: E402

STORED = f"png-{PNG_COMPRESS_LEVEL}"
AUTHORS = "jpeg-q95"
# name -> Pillow save arguments. zlib strategies: 1 filtered, 3 run-length (Pillow's compress_type).
CANDIDATES: dict[str, dict[str, Any]] = {
    STORED: {"format": "PNG", "compress_level": PNG_COMPRESS_LEVEL},
    "png-1": {"format": "PNG", "compress_level": 1},
    "png-9": {"format": "PNG", "compress_level": 9},
    "png-9-filtered": {"format": "PNG", "compress_level": 9, "compress_type": 1},
    "png-9-rle": {"format": "PNG", "compress_level": 9, "compress_type": 3},
    "png-optimize": {"format": "PNG", "optimize": True},
    "webp-lossless-fast": {"format": "WEBP", "lossless": True, "quality": 0, "method": 0},
    "webp-lossless": {"format": "WEBP", "lossless": True, "quality": 80, "method": 4},
    "webp-lossless-max": {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
    AUTHORS: {"format": "JPEG", "quality": 95},
}
LOSSY = {AUTHORS}


def sample_images(hub: Path, count: int) -> list[bytes]:
    """`count` distinct stored images, spread evenly over the configurations' files."""
    blobs: dict[bytes, None] = {}
    for path in sorted(hub.glob("data/*/*.parquet")):
        column = pq.read_table(path, columns=["image"]).column("image").combine_chunks().field("bytes")
        blobs.update(dict.fromkeys(blob for blob in column.to_pylist() if blob is not None))
    distinct = list(blobs)
    step = max(1, len(distinct) // count)
    return distinct[::step][:count]


def encode(image: Image.Image, options: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def decode(blob: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(blob))
    image.load()
    return image


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(blobs: list[bytes], repeats: int) -> dict[str, dict[str, Any]]:
    images = [decode(blob) for blob in blobs]
    pixels = [np.asarray(image) for image in images]
    figures: dict[str, dict[str, Any]] = {}
    for name, options in CANDIDATES.items():
        encoded = [encode(image, options) for image in images]
        again = [encode(image, options) for image in images]
        exact = all(_same_pixels(decode(blob), reference) for blob, reference in zip(encoded, pixels))
        encode_s = _best(lambda: [encode(image, options) for image in images], repeats)
        decode_s = _best(lambda: [decode(blob) for blob in encoded], repeats)
        figures[name] = {"bytes": sum(map(len, encoded)), "encode_ms": round(1000 * encode_s / len(images), 2),
                         "decode_ms": round(1000 * decode_s / len(images), 2), "lossless": exact,
                         "deterministic": encoded == again, "decoded_mode": decode(encoded[0]).mode}
    stored = figures[STORED]
    for row in figures.values():
        row["size_vs_stored"] = round(row["bytes"] / stored["bytes"], 3)
        row["decode_vs_stored"] = round(row["decode_ms"] / stored["decode_ms"], 3)
    return figures


def _same_pixels(image: Image.Image, reference: np.ndarray) -> bool:
    """Equal values; a gray image stored as RGB (WebP has no gray mode) must repeat them in every channel."""
    values = np.asarray(image)
    if values.ndim == 3 and reference.ndim == 2:
        return all(np.array_equal(values[..., band], reference) for band in range(values.shape[2]))
    return np.array_equal(values, reference)


def config_files(hub: Path, name: str) -> list[Path]:
    parts = ("diagnosis", "localization") if name == "full" else (name,)
    return [path for part in parts for path in sorted(hub.glob(f"data/{part}/*.parquet"))]


def downloads(hub: Path, figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration: MB as stored, projected per candidate, and the authors' JSON + JPEG layout."""
    result = {}
    for name in CONFIG_NAMES:
        files = config_files(hub, name)
        stored_mb = sum(path.stat().st_size for path in files) / 2**20
        rows: list[dict] = []
        image_bytes = 0
        distinct: dict[str, int] = {}
        for path in files:
            table = pq.read_table(path)
            image = table.column("image").combine_chunks()
            image_bytes += pc.sum(pc.binary_length(image.field("bytes"))).as_py() or 0
            for item_id, size in zip(table.column("image_id").to_pylist(),
                                     pc.binary_length(image.field("bytes")).to_pylist()):
                distinct[item_id] = size or 0
            rows += table.drop_columns(["image"]).to_pylist()
        other_mb = stored_mb - image_bytes / 2**20
        projected = {candidate: round(other_mb + image_bytes / 2**20 * row["size_vs_stored"], 1)
                     for candidate, row in figures.items() if candidate not in LOSSY}
        json_mb = len(json.dumps(rows, default=str).encode()) / 2**20
        jpeg_mb = sum(distinct.values()) / 2**20 * figures[AUTHORS]["size_vs_stored"]
        authors = round(json_mb + jpeg_mb, 1)
        result[name] = {"items": len(rows), "distinct_images": len(distinct), "stored_mb": round(stored_mb, 1),
                        "projected_mb": projected, "authors_json_jpeg_mb": authors,
                        "stored_vs_authors": round(stored_mb / authors, 2) if authors else None}
    return result


def run(hub: Path, sample: int = 120, repeats: int = 3) -> dict[str, Any]:
    blobs = sample_images(hub, sample)
    figures = measure(blobs, repeats)
    return {"hub": str(hub), "sample_images": len(blobs),
            "mean_pixels": round(float(np.mean([decode(b).width * decode(b).height for b in blobs]))),
            "candidates": figures, "downloads": downloads(hub, figures)}


def print_rows(result: dict[str, Any]) -> None:
    print(f"image encodings ({result['sample_images']} distinct images, mean {result['mean_pixels']} pixels):")
    for name, row in result["candidates"].items():
        print(f"  {name:20s} size x{row['size_vs_stored']:.3f}  encode {row['encode_ms']:7.2f} ms  decode "
              f"{row['decode_ms']:6.2f} ms (x{row['decode_vs_stored']:.2f})  lossless {row['lossless']}  "
              f"deterministic {row['deterministic']}  decodes to {row['decoded_mode']}")
    print("download per configuration (MB; candidates projected by the sample's size ratio):")
    for name, row in result["downloads"].items():
        best = min(row["projected_mb"].items(), key=lambda item: item[1])
        print(f"  {name:13s} {row['items']:6d} items: stored {row['stored_mb']} MB, authors' JSON + JPEG q95 "
              f"{row['authors_json_jpeg_mb']} MB (x{row['stored_vs_authors']}); smallest lossless {best[0]} "
              f"{best[1]} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.formats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", type=Path, required=True, help="a built Hub folder (OUT/spinebench)")
    parser.add_argument("--sample", type=int, default=120, help="distinct images re-encoded")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the best counts)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = run(args.hub, args.sample, args.repeats)
    print_rows(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
