"""BUU-LSPINE replica: lumbar AP and lateral JPEGs with headerless endplate CSVs and the report workbook.

Copies the open `BUU-LSPINE_400` release (docs/sources.md section 1), nested twice on purpose as some unzips
are, with the mirrors' defects planted: a `(1)` duplicate, an image without its CSV, a short CSV and a
lateral row with its two points swapped.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openpyxl

from build.replicas.phantom import (LEVELS, Job, Lesion, Spine, build_spine, count, edge_case, fixed_zip,
                                    pick, render, rng_for, save_image, spread, write_csv, xray_scene)

SOURCE = "buu"
RELEASE = "BUU-LSPINE_400"
ROOT = f"{RELEASE}/{RELEASE}"  # the double nesting is one of the planted cases
PAPER_PATIENTS = 403  # 806 label records = AP + lateral per patient
VIEWS = {0: ("AP", "AP"), 1: ("LA", "lateral")}  # stem view digit -> (folder, record view)
SLIP_LEVELS = (1, 2, 3, 4)  # index of the slipped body in LUMBAR: L2..L5
SLIP_WEIGHTS = (0.05, 0.15, 0.5, 0.3)
SLIP_CODES = {0: ((3, -1), (4, 1)), 1: ((1, -1), (2, 1))}  # view -> (label integer, shift direction) [U]
SHORT_ROWS = 6


def plant(root: Path, seed: int, scale: float) -> tuple[list[dict], list[dict], list[Job]]:
    """Write the CSVs and workbook now; return manifest images, edge cases and the JPEG jobs."""
    rng = rng_for(seed, SOURCE)
    n = count(PAPER_PATIENTS, scale, 3)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 3601), n, replace=False))
    patients = [(pid, pick(rng, "FM"), int(rng.integers(12, 86))) for pid in ids]
    # the 400-subset has 10 AP and 66 lateral slips; the short-CSV and missing-CSV images stay unslipped
    slipped = {
        (int(p), 1) for p in rng.choice([0, *range(2, n)], max(1, round(n * 66 / 400)), replace=False)
    } | {(int(p), 0) for p in rng.choice(range(1, n), max(1, round(n * 10 / 400)), replace=False)}
    swapped = pick(rng, sorted(k for k in slipped if k[1] == 1))
    modes = spread(rng, 2 * n, ("L", "RGB"), (0.6, 0.4))
    images, edges, jobs, sheet = [], [], [], []
    edges.append(edge_case(SOURCE, ROOT, "nested_root", "accept", detail="release root nested twice"))
    for k, (pid, sex, age) in enumerate(patients):
        for view in (0, 1):
            folder, view_name = VIEWS[view]
            stem = f"{pid:04d}-{sex}-{age:03d}Y{view}"
            image_path = f"{ROOT}/{folder}/{stem}.jpg"
            csv_path = f"{ROOT}/{folder}/{stem}.csv"
            mode = modes[2 * k + view]
            lesions, label, index = [], 0, None
            if (k, view) in slipped:
                index = pick(rng, SLIP_LEVELS, SLIP_WEIGHTS)
                label, side = pick(rng, SLIP_CODES[view])
                lesions = [Lesion("slip", index, side)]
            bend = (rng.uniform(-0.07, -0.03), 0.0, 0.0) if view else (rng.uniform(-0.015, 0.015), 0.0, 0.0)
            width, height = int(rng.integers(160, 201)), int(rng.integers(200, 257))
            spine = build_spine(rng, width, height, "lumbar", VIEWS[view][1], lesions, bend)
            paths = [root / image_path]
            if k == n - 1 and view == 1:
                copy = f"{ROOT}/{folder}/{stem}(1).jpg"
                paths.append(root / copy)
                edges.append(edge_case(SOURCE, copy, "duplicate_copy", "reject", stem, "mirror duplicate"))
            jobs.append((draw, (tuple(paths), spine, int(rng.integers(2**63)), mode)))
            sheet.append((len(sheet), stem, sex, age))
            rows = endplate_rows(rng, spine, view, label, index)
            if k == 0 and view == 0:
                edges.append(edge_case(SOURCE, image_path, "missing_csv", "reject", stem, "no CSV"))
                continue
            if k == 1 and view == 1:
                rows = rows[:SHORT_ROWS]
                edges.append(edge_case(SOURCE, csv_path, "short_csv", "warn", stem,
                                       f"{SHORT_ROWS} of 11 rows: no level question"))
            if (k, view) == swapped:
                row = int(rng.integers(len(rows)))
                rows[row] = rows[row][2:4] + rows[row][0:2] + rows[row][4:]
                edges.append(edge_case(SOURCE, csv_path, "swapped_points", "warn", stem, f"row {row + 1}"))
            write_csv(root / csv_path, None, rows)
            level = None if index is None else LEVELS[index]
            images.append({
                "source": SOURCE, "path": image_path, "image_key": stem, "patient_id": f"{pid:04d}",
                "modality": "X-ray", "region": "lumbar", "view": view_name, "sex": sex, "age": age,
                "diseases": ["Healthy" if level is None else "Spondylolisthesis"],
                "raw_labels": ["normal" if level is None else "slip"],
                "levels": {} if level is None else
                {"Spondylolisthesis": [{"level": level, "severity": None, "label": "slip"}]},
                "mode": mode,
            })
    write_workbook(root / ROOT / f"{RELEASE}_report.xlsx", sheet)
    return images, edges, jobs


def endplate_rows(rng: np.random.Generator, spine: Spine, view: int, label: int,
                  slipped: int | None) -> list[list[str]]:
    """x1,y1,x2,y2,label per endplate, cranial to caudal: L1 top .. L5 bottom (+ S1 top on laterals);
    the label sits on the bottom row of the slipped body."""
    ends = [row for i, body in enumerate(spine.bodies[:5])
            for row in ((body.top(), 0), (body.bottom(), label if i == slipped else 0))]
    if view == 1:
        ends.append((spine.bodies[5].top(), 0))
    return [[*(_digits(rng, v) for point in points for v in point), str(code)] for points, code in ends]


def _digits(rng: np.random.Generator, value: float) -> str:
    """A coordinate with 4 to 7 significant digits, as the release writes them."""
    decimals = max(0, int(rng.integers(4, 8)) - len(str(int(value))))
    return f"{value:.{decimals}f}"


def write_workbook(path: Path, rows: list[tuple]) -> None:
    """The report workbook: Column1, filename, gender, age; diagnosis columns are [U] and left out."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = f"diag_all_{RELEASE}"
    sheet.append(["Column1", "filename", "gender", "age"])
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(fixed_zip(buffer.getvalue()))


def draw(paths: tuple[Path, ...], spine: Spine, seed: int, mode: str) -> None:
    pixels = render(xray_scene(spine), np.random.default_rng(seed))
    for path in paths:
        save_image(path, pixels, mode)
