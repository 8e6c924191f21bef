"""Write synthetic replicas of the four raw releases, with a manifest of everything planted.

No network and no patient data: small drawn spines in the exact on-disk layouts of docs/sources.md, with the
releases' known defects planted on purpose. DIR/manifest.json says what was planted (images, diseases,
levels, header facts, edge cases and what the pipeline should do with each); reader tests check against it.
Scale 1 is about 1% of the paper (~400 images); scale 100 is the paper's size (~40,000 images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

from tqdm import tqdm

from build.replicas import buu, csxa, layouts, rsna, vindr
from build.replicas.phantom import LOOKALIKES, PHI_MARKERS, Job

COMMAND = "replicas"
HELP = "write synthetic replicas of the four raw releases (no real data) and their manifest"
SOURCES = {"buu": buu, "csxa": csxa, "rsna": rsna, "vindr": vindr}
PARALLEL_FROM = 2000  # jobs; below this a pool costs more than it saves


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write DIR/<source>/ trees into")
    parser.add_argument("--scale", type=float, default=1.0, help="1 = ~1%% of the paper, 100 = full size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes drawing pixels (default: all cores for large trees); same output")
    parser.add_argument("--layout", action="append", metavar="SOURCE=VARIANT",
                        help="download layout of a source, repeatable: " + "; ".join(
                            f"{s}={'|'.join(v)}" for s, v in layouts.LAYOUTS.items()) + " (first: default)")


def main(args: argparse.Namespace) -> int:
    try:
        layout = layouts.parse(args.layout)
    except ValueError as error:
        print(f"replicas: {error}")
        return 2
    manifest = generate(args.out, args.scale, args.seed, args.workers, layout)
    counts = manifest["counts"]["images_by_source"]
    print(f"replicas: {sum(counts.values())} images ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
          f"{len(manifest['edge_cases'])} edge cases -> {args.out}")
    return 0


def generate(out: Path, scale: float = 1, seed: int = 0, workers: int | None = None,
             layout: dict[str, str] | None = None) -> dict:
    """Write DIR/<source>/ for the four sources and DIR/manifest.json; return the manifest.

    Each source's tree is replaced, so a rerun never leaves stale files behind. `layout` picks each
    source's download layout (layouts.LAYOUTS; the default for sources it does not name): only where the
    files sit changes, never their bytes.
    """
    layout = {**layouts.DEFAULT, **(layout or {})}
    if scale <= 0:
        raise ValueError("scale must be positive")
    out = Path(out)
    images, edges, jobs = [], [], []
    for name, module in SOURCES.items():
        root = out / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        planted = module.plant(root, seed, scale)
        images += planted[0]
        edges += planted[1]
        jobs += planted[2]
    run(jobs, workers)
    for name in SOURCES:
        rename = layouts.apply(out / name, name, layout[name])
        for entry in (*images, *edges):
            if entry["source"] == name:
                entry["path"] = rename(entry["path"])
    images.sort(key=lambda entry: (entry["source"], entry["path"]))
    edges.sort(key=lambda entry: (entry["source"], entry["path"], entry["kind"], entry["image_key"] or ""))
    manifest = {
        "seed": seed,
        "scale": float(scale),
        "layout": layout,
        "phi_markers": sorted(PHI_MARKERS.values()),
        "lookalikes": [list(group) for group in LOOKALIKES],
        "images": images,
        "edge_cases": edges,
        "counts": {
            "images_by_source": dict(sorted(Counter(entry["source"] for entry in images).items())),
            "images_by_disease": dict(sorted(Counter(d for e in images for d in e["diseases"]).items())),
        },
    }
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def run(jobs: list[Job], workers: int | None) -> None:
    """Draw every pixel file; each job carries its own seed, so the worker count never changes output."""
    if workers is None:
        workers = (os.cpu_count() or 1) if len(jobs) >= PARALLEL_FROM else 1
    progress = tqdm(total=len(jobs), desc="replicas", unit="file", disable=len(jobs) < PARALLEL_FROM)
    if workers <= 1:
        for job in jobs:
            _call(job)
            progress.update()
    else:
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(_call, jobs, chunksize=32):
                progress.update()
    progress.close()


def _call(job: Job) -> None:
    fn, args = job
    fn(*args)
