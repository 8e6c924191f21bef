"""Fixed costs around the stages, and what a user pays after the build: the rows `benchmarks.bench` adds.

- `--help`: `python -m build --help`, against importing every command module (what it did before);
- the whole `build run` at the ingest figures' scale, 1 worker against 2, in turn, the ratio per pair;
- at the releases' pixel sizes (the enlarged replicas of the bench's second stage, built once into a Hub
  folder): the fallback embedder's cost per image and at the paper's 40,000 images, the image encodings and
  download sizes (benchmarks/formats.py) and the evaluation overhead (benchmarks/eval_bench.py).
Every process-level figure is the median of the repeats; in --quick mode no verdict is given.
"""

from __future__ import annotations

import io
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks import eval_bench, formats

ROOT = Path(__file__).resolve().parent.parent
PAPER_IMAGES = 40_000
TARGETS = {"help_s": 0.5, "run_speedup_1_to_2": 1.5}
EAGER_IMPORTS = ("import importlib, build.__main__ as m; "
                 "[importlib.import_module(name) for name in m.COMMAND_MODULES]")


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started


def help_figures(repeats: int) -> dict[str, Any]:
    lazy, eager = [], []
    for _ in range(repeats):
        lazy.append(_wall([sys.executable, "-m", "build", "--help"]))
        eager.append(_wall([sys.executable, "-c", EAGER_IMPORTS]))
    return {"help_s": round(statistics.median(lazy), 3), "all_command_imports_s": round(statistics.median(eager), 3)}


def run_speedup(raw: Path, scratch: Path, repeats: int) -> dict[str, Any]:
    """`python -m build run` from scratch with 1 and with 2 workers, in turn; the ratio of each pair."""
    walls: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(repeats):
        for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
            out = scratch / f"run-w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            command = [sys.executable, "-m", "build", "run", "--raw", str(raw), "--out", str(out),
                       "--workers", str(workers)]
            started = time.perf_counter()
            subprocess.run(command, cwd=ROOT, capture_output=True, check=False)  # 3: planted bad files
            walls[workers].append(time.perf_counter() - started)
    ratios = [one / two for one, two in zip(walls[1], walls[2])]
    return {"wall_s": {str(w): round(statistics.median(v), 2) for w, v in walls.items()},
            "per_repeat": [round(r, 3) for r in ratios], "run_speedup_1_to_2": round(statistics.median(ratios), 3)}


def real_size_hub(raw: Path, scratch: Path) -> Path:
    """A Hub folder built from `raw` by this code (never reused: it is what the code makes now)."""
    out = scratch / "real-size-hub"
    hub = out / "spinebench"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "build", "run", "--raw", str(raw), "--out", str(out), "--workers", "2"],
                   cwd=ROOT, capture_output=True, check=False)  # exit 3: the planted bad files
    if not (hub / "README.md").exists():
        raise RuntimeError(f"the real-size build in {out} failed")
    return hub


def fallback_cost(hub: Path, count: int) -> dict[str, Any]:
    """The fallback embedder on stored real-size images, PNG decode included (as the items stage pays it)."""
    from build.embedders import FallbackEmbedder

    blobs = formats.sample_images(hub, count)
    embedder = FallbackEmbedder()
    started = time.perf_counter()
    for start in range(0, len(blobs), embedder.batch_size):
        embedder.embed([Image.open(io.BytesIO(blob)) for blob in blobs[start:start + embedder.batch_size]])
    per_image = (time.perf_counter() - started) / len(blobs)
    return {"images": len(blobs), "ms_per_image": round(1000 * per_image, 2),
            "paper_size_s": round(per_image * PAPER_IMAGES, 1)}


def run(scratch: Path, settings: Any) -> dict[str, Any]:
    """All the rows, printed as they come; `settings` is benchmarks.bench's."""
    print("[+] fixed costs, image formats and evaluation overhead (benchmarks/costs.py)", flush=True)
    quick = settings.quick
    repeats = 1 if quick else 3
    result: dict[str, Any] = {"help": help_figures(3 if quick else 5)}
    print(f"  python -m build --help {result['help']['help_s']} s (importing every command module: "
          f"{result['help']['all_command_imports_s']} s)", flush=True)
    result["run"] = run_speedup(scratch / f"raw-{settings.scale:g}", scratch, repeats)
    print(f"  build run, 1 -> 2 workers: {result['run']}", flush=True)
    hub = real_size_hub(scratch / f"raw-{settings.real_scale:g}-x{settings.pixel_factor:g}", scratch)
    result["fallback_embedder"] = fallback_cost(hub, 64 if quick else 256)
    print(f"  fallback embedder at real size: {result['fallback_embedder']}", flush=True)
    result["formats"] = formats.run(hub, 10 if quick else 60, repeats)
    formats.print_rows(result["formats"])
    result["eval"] = eval_bench.run(hub, "mini", repeats)
    eval_bench.print_rows(result["eval"], quick)
    result["targets"] = verdicts(result) + eval_bench.verdicts(result["eval"])
    for row in verdicts(result):
        verdict = "QUICK " if quick else ("MET   " if row["met"] else "MISSED")
        print(f"  {verdict} {row['name']}: {row['value']} (target {row['target']})", flush=True)
    return result


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [("help_s", result["help"]["help_s"], "<", TARGETS["help_s"]),
            ("run_speedup_1_to_2", result["run"]["run_speedup_1_to_2"], ">=", TARGETS["run_speedup_1_to_2"])]
    return [{"name": name, "value": value, "target": f"{op} {target}",
             "met": value < target if op == "<" else value >= target} for name, value, op, target in rows]

