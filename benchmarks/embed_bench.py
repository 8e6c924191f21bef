"""Embedding throughput of the items stage: SigLIP2 per batch size on a device, and the fallback embedder.

    python -m benchmarks.embed_bench                                  # tiny random SigLIP2: the code path only
    python -m benchmarks.embed_bench --model /models/siglip2-base-patch16-256 [--device cuda] [--hub OUT/spinebench]

Without --model the SigLIP2 figures come from the tiny randomly initialised model of tests/tiny_models.py:
they time transformers' processor and the code around the model, not a real encoder. With a checkpoint
folder (or a Hub id already in the local cache: no network at run time) they are the real speed; the
paper-size estimate multiplies the best rate by 40,000 images. Images are the stored real-size images of
`--hub` when given (decoded before timing), else drawn gray images of 512 x 410 pixels.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from build.embedders import FallbackEmbedder, Siglip2Embedder, default_batch_size  # noqa: E402

PAPER_IMAGES = 40_000


def images(hub: Path | None, count: int) -> list[Image.Image]:
    if hub is not None:
        from benchmarks.formats import sample_images

        decoded = []
        for blob in sample_images(hub, count):
            image = Image.open(io.BytesIO(blob))
            image.load()
            decoded.append(image)
        return (decoded * (1 + count // max(1, len(decoded))))[:count]
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (512, 410), dtype=np.uint8), "L") for _ in range(count)]


def rate(embed, batch: list[Image.Image], repeats: int) -> float:
    embed(batch[:2])  # warm-up: first-call allocations
    best = min(_timed(lambda: embed(batch)) for _ in range(repeats))
    return round(len(batch) / best, 1)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(model: str | None, device: str, hub: Path | None, count: int, batch_sizes: list[int],
        repeats: int) -> dict[str, Any]:
    batch = images(hub, count)
    with tempfile.TemporaryDirectory() as scratch:
        if model is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_models import build_tiny_siglip2

            model = str(build_tiny_siglip2(Path(scratch) / "tiny-siglip2"))
            kind = "tiny random SigLIP2 (code path, not a real model's speed)"
        else:
            kind = model
        siglip = Siglip2Embedder(model, device=device)
        per_batch = {}
        for size in batch_sizes:
            siglip.batch_size = size
            per_batch[str(size)] = rate(siglip.embed, batch, repeats)
    best = max(per_batch.values())
    fallback = rate(FallbackEmbedder().embed, batch, repeats)
    return {"model": kind, "device": device, "images": len(batch), "mean_pixels": round(
        float(np.mean([im.width * im.height for im in batch]))), "default_batch_size": default_batch_size(device),
        "siglip2_images_per_s": per_batch, "siglip2_paper_size_s": round(PAPER_IMAGES / best, 1),
        "fallback_images_per_s": fallback, "fallback_paper_size_s": round(PAPER_IMAGES / fallback, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="SigLIP2 checkpoint folder or cached Hub id (default: tiny random)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--hub", type=Path, help="a built Hub folder whose stored images are embedded")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = run(args.model, args.device, args.hub, args.images, [int(b) for b in args.batch_sizes.split(",")],
                 args.repeats)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
