"""Smoke test of the performance benchmark: `--quick` on tiny replicas writes every figure.

Not a timed assertion: the figures of a tiny, shared-machine run say nothing about the targets. It checks that
every section runs end to end (fresh build subprocesses included) and that the JSON holds every figure.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "benchmarks.bench", "--quick", "--scale", "0.3", "--mem-scale", "0.1",
               "--embed-images", "16", "--real-scale", "0.1", "--size-share", "0.15",
               "--codec-files", "2", "--work", str(tmp_path / "work"),
               "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "\ntargets" in done.stdout
    figures = json.loads(out.read_text(encoding="utf-8"))

    ingest = figures["ingest"]
    assert ingest["files"] > 0
    for case in ("floor_1", "worker_body_1", "ingest_1", "floor_2", "ingest_2"):
        assert _number(ingest["images_per_s"][case]) and ingest["images_per_s"][case] > 0
    for ratio in ("ingest_vs_floor", "ingest_vs_floor_cpu", "ingest_2_vs_floor_2", "speedup_1_to_2",
                  "floor_speedup_1_to_2"):
        assert _number(ingest[ratio]) and ingest[ratio] > 0
        assert len(ingest["ratios"][ratio]["per_repeat"]) == figures["settings"]["repeats"]
    assert set(ingest["breakdown_single_cpu_s"]) >= {"floor_decode_resize_encode", "hash_and_quality_figures",
                                                     "readers_and_labels", "ingest_total"}

    real = figures["ingest_real_size"]
    assert real["size_share"] == 0.15 and real["files"] > 0
    assert _number(real["ingest_vs_floor"]) and _number(real["speedup_1_to_2"])

    codecs = figures["codecs"]["codecs"]
    assert {"vindr JPEG 2000", "buu JPEG", "csxa PNG", "rsna uncompressed"} <= set(codecs)
    for codec in codecs.values():
        assert 0 < codec["files"] <= 2 and codec["files"] <= codec["of"]
        assert all(_number(v) and v > 0 for v in codec["ms_per_image"].values())
        assert _number(codec["project_vs_full_decode"]) and codec["reduced_decode"]

    projection = figures["projection"]
    assert projection["sample_images"] > 0 and projection["projected_images"] > 50 * projection["sample_images"]
    assert set(projection["projected_seconds"]) >= {"ingest", "items", "export", "check"}
    assert set(projection["ingest_minutes_by_source"]) == {"buu", "csxa", "rsna", "vindr"}
    assert "Extrapolated" in projection["method"] and _number(projection["peak_mb"])

    memory = figures["memory"]
    for size in ("N", "10N"):
        build = memory[size]
        assert build["images"] > 0 and build["check_ok"] is True
        assert _number(build["peak_mb"]) and build["peak_mb"] > 0
        assert set(build["seconds"]) >= {"ingest", "items", "export", "check"}
        assert _number(build["maxrss_largest_worker_mb"])
        assert set(build["stage_peak_mb"]) >= {"ingest", "items", "export", "check"}
        assert all(_number(v["main_mb"]) and _number(v["tree_mb"]) for v in build["stage_peak_mb"].values())
    assert memory["10N"]["images"] > 5 * memory["N"]["images"]
    assert _number(memory["growth_10x"]) and _number(memory["peak_mb"])

    embedding = figures["embedding"]
    assert set(embedding["siglip2_tiny_images_per_s"]) == {"1", "8", "32", "64"}
    assert all(_number(v) and v > 0 for v in embedding["siglip2_tiny_images_per_s"].values())
    assert _number(embedding["fallback_images_per_s"]) and embedding["fallback_images_per_s"] > 0

    assert figures["full"] == {"run": False}
    targets = {row["name"]: row for row in figures["targets"]}
    assert set(targets) >= {"ingest_vs_floor", "ingest_vs_floor_real_size", "speedup_1_to_2", "speedup_1_to_2_real_size",
                            "memory_growth_10x", "memory_peak_mb", "projection_peak_mb",
                            "project_vs_full_decode vindr JPEG 2000", "project_vs_full_decode buu JPEG",
                            "project_vs_full_decode csxa PNG", "project_vs_full_decode rsna uncompressed"}
    assert all(_number(row["value"]) for row in targets.values())
    # a quick run judges nothing: one repeat on tiny inputs says nothing about a target
    assert all(row["met"] is None for row in targets.values())
    assert "NOT meaningful" in done.stdout and not re.search(r"^\s*(MET|MISSED)\b", done.stdout, re.MULTILINE)
