"""CSXA replica: lateral cervical PNGs, 23-keypoint JSONs and a metadata table.

PLACEHOLDER SCHEMA [U]: the real CSXA JSON schema, metadata columns and curvature strings are unknown
(docs/sources.md section 2). This writes a placeholder layout (metadata.csv, images/, annotations/) that the
default configs/csxa.yaml reads; layouts.py turns it into Science Data Bank's datasets.xlsx + two zips.
It is not a copy of the real release.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from build.replicas.phantom import (Job, Spine, build_spine, count, dens_tip, pick, render, rng_for,
                                    save_image, spread, write_csv, xray_scene)

SOURCE = "csxa"
ROOT = "CSXA"
PAPER_IMAGES = 4963
# raw metadata value -> (SpineBench disease, share of images)
CURVES = {
    "Lordosis": ("Cervical lordosis", 0.45),
    "Straight": ("Straight cervical vertebrae", 0.25),
    "Kyphosis": ("Cervical kyphosis", 0.15),
    "S-shaped": ("Sigmoid cervical vertebrae", 0.15),
}
HEADER = ("image_id", "patient_id", "gender", "age", "mm_per_pixel", "group", "curvature")


def plant(root: Path, seed: int, scale: float) -> tuple[list[dict], list[dict], list[Job]]:
    """Write metadata and keypoint JSONs now; return manifest images, (no) edge cases and the PNG jobs."""
    rng = rng_for(seed, SOURCE)
    n = count(PAPER_IMAGES, scale, 8)
    curves = spread(rng, n, list(CURVES), [share for _, share in CURVES.values()])
    bits = spread(rng, n, (16, 8), (0.06, 0.94))
    patients = sorted(int(p) for p in rng.choice(np.arange(100000, 1000000), n, replace=False))
    ids = sorted(int(i) for i in rng.choice(np.arange(1000, 3_000_000), n, replace=False))
    images, jobs, table = [], [], []
    for curve, depth, patient, number in zip(curves, bits, patients, ids):
        stem = f"{number:07d}"  # 7-digit ids, most with leading zeros, as in public code
        sex, age = pick(rng, "FM"), int(rng.integers(18, 81))
        width, height = int(rng.integers(170, 211)), int(rng.integers(190, 241))
        spine = build_spine(rng, width, height, "cervical", "lateral", (), bend(rng, curve))
        table.append((stem, f"P{patient}", sex, age, f"{rng.uniform(0.6, 1.0):.4f}",
                      pick(rng, ("asymptomatic", "symptomatic")), curve))
        annotation = root / ROOT / "annotations" / f"{stem}.json"
        annotation.parent.mkdir(parents=True, exist_ok=True)
        annotation.write_text(json.dumps(labelme(spine, stem), indent=2) + "\n", encoding="utf-8")
        path = f"{ROOT}/images/{stem}.png"
        jobs.append((draw, (root / path, spine, int(rng.integers(2**63)), depth)))
        images.append({
            "source": SOURCE, "path": path, "image_key": stem, "patient_id": f"P{patient}",
            "modality": "X-ray", "region": "cervical", "view": "lateral", "sex": sex, "age": age,
            "diseases": [CURVES[curve][0]], "raw_labels": [curve], "levels": {}, "bits_stored": depth,
        })
    write_csv(root / ROOT / "metadata.csv", HEADER, table)
    return images, [], jobs


def bend(rng: np.random.Generator, curve: str) -> tuple[float, float, float]:
    """Column bend per class; kyphosis stays mild so it reads close to straight (a planted lookalike)."""
    tilt = rng.uniform(-0.05, 0.05)
    if curve == "Lordosis":
        return (-rng.uniform(0.1, 0.15), 0.0, tilt)
    if curve == "Straight":
        return (rng.uniform(-0.01, 0.01), 0.0, tilt)
    if curve == "Kyphosis":
        return (rng.uniform(0.04, 0.07), 0.0, tilt)
    return (-rng.uniform(0.0, 0.02), rng.choice((-1, 1)) * rng.uniform(0.05, 0.07), tilt)


def labelme(spine: Spine, stem: str) -> dict:
    """23 keypoints: the dens tip and C2's lower corners, then four corners of C3..C7."""
    c2, *rest = spine.bodies
    bf, bb = c2.bottom()
    points = [("C2_tip", dens_tip(c2)), ("C2_ai", bf), ("C2_pi", bb)]
    for body in rest:
        tf, tb, b_back, b_front = body.corners()
        points += [(f"{body.name}_as", tf), (f"{body.name}_ps", tb), (f"{body.name}_pi", b_back),
                   (f"{body.name}_ai", b_front)]
    return {
        "version": "5.2.1", "flags": {},
        "shapes": [{"label": label, "points": [[round(x, 2), round(y, 2)]], "group_id": None,
                    "shape_type": "point", "flags": {}} for label, (x, y) in points],
        "imagePath": f"../images/{stem}.png", "imageData": None,
        "imageHeight": spine.height, "imageWidth": spine.width,
    }


def draw(path: Path, spine: Spine, seed: int, depth: int) -> None:
    save_image(path, render(xray_scene(spine), np.random.default_rng(seed)), "I;16" if depth == 16 else "L")
