"""SpineBench performance benchmark: every figure of issues 6 and 15, measured side by side in one run.

    python -m benchmarks.bench [--quick] [--full] [--out FILE.json] [--work DIR]

Figures (benchmarks/README.md explains each one and how it is measured):
  ingest      images/s of the ingest stage against a floor that does only the unavoidable work on the same
              files (decode + window + resize + PNG encode in a bare loop: no readers, no Parquet, no pool),
              single process against single process; plus 2 workers against the floor in 2 bare processes
  speedup     ingest wall time with 1 worker / with 2 workers (and the same for the floor: what the machine
              gives at that moment)
  real size   the same ingest figures on the replicas copied at the releases' pixel sizes and codecs
              (benchmarks/enlarge.py: VinDr 2-3k px JPEG 2000 with a few uncompressed, BUU 2.1-3k JPEG,
              CSXA 1.5-2k PNG, RSNA 384-640 px slices)
  codecs      per source and codec on those files: the project (an ingest worker's job per image, decoding
              only the pixels it keeps) against the full-decode floor (every pixel decoded, then window,
              resize, PNG encode)
  projection  the paper-size build (~39k images) at real pixel sizes, stage by stage, extrapolated from a
              measured build of the release-size replicas (the paper's per-source mix at 1 % of its size)
  memory      peak memory of a full build (ingest + items + export + check, fallback embedder) at N and 10N
              images, each in a fresh subprocess, workers included
  embedding   images/s of the tiny SigLIP2 path per batch size (1, 8, 32, 64) and of the fallback embedder
  full        (--full only) replicas at the paper's scale (100) through every stage, time of each stage

Targets: ingest >= 85% of the floor; 1 -> 2 workers >= 1.7x (>= 1.8x at real sizes); the project >= 3x the
full-decode floor on JPEG 2000 and JPEG, >= 1x on PNG and uncompressed; memory at 10N < 1.3x memory at N;
< 2 GB; the projection's build < 1 GB. A --quick run prints its figures but judges none of them.
The machine may be shared: every timed section also records how much CPU other processes used meanwhile
(`foreign_cpu_share`), so a missed target can be told apart from a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `build` must be this project's package, not PyPA's
    sys.path.insert(0, str(ROOT))

try:
    import psutil
except ImportError:  # accelerate pulls it in; without it memory falls back to getrusage alone
    psutil = None

WORKERS = 2  # the parallel figures compare 1 with this many processes
BATCH_SIZES = (1, 8, 32, 64)
QUIET_SHARE = 0.15  # before each timed case, wait until other processes use less than this share of the CPUs
TARGETS = {
    "ingest_vs_floor": 0.85,  # ingest images/s / floor images/s, single process, at least
    "speedup_1_to_2": 1.7,  # ingest wall time 1 worker / 2 workers, at least
    "speedup_1_to_2_real_size": 1.8,  # the same on the replicas at the releases' pixel sizes, at least
    "projection_peak_mb": 1024.0,  # peak of the build of the paper-size projection's sample, below
    "memory_growth_10x": 1.3,  # peak at 10N / peak at N (PSS of the process tree), below
    "memory_peak_mb": 2048.0,  # any build's peak (RSS summed over the process tree: an upper bound), below
}
# The project (what an ingest worker runs per image) / the full-decode floor (every pixel decoded, then
# window, resize, PNG encode), per codec at the releases' pixel sizes: at least.
CODEC_TARGETS = {"JPEG 2000": 3.0, "JPEG": 3.0, "PNG": 1.0, "uncompressed": 1.0}
# What the reduced decode does for each codec (build/imaging.py, "decoding only the pixels we keep").
CODEC_REDUCTION = {
    "JPEG 2000": "resolution level >= the output (Pillow's OpenJPEG `reduce`)",
    "JPEG": "DCT scaling 1/2, 1/4 or 1/8 >= the output (Pillow's `draft`)",
    "PNG": "none exists (zlib rows): full decode, box average to >= 2x the output before window and resize",
    "uncompressed": "none needed (no codec): box average to >= 2x the output before the window",
    "RLE": "none exists (pylibjpeg-rle decodes every pixel): box average before the window",
}
# Paper-size build: images per source at replica scale 100 (the releases' counts, ~39,300 images).
PAPER_SCALE = 100


@dataclass(frozen=True)
class Settings:
    scale: float  # replicas for the ingest and embedding figures (scale 1 ~ 390 images)
    repeats: int  # timed repeats of each ingest figure; the best (shortest) counts
    mem_scale: float  # N for the memory figure; 10N is mem_scale * mem_factor
    mem_factor: float
    embed_images: int  # images embedded per batch size
    embed_repeats: int
    quiet_wait: float  # at most this many seconds of waiting for a quiet machine before each timed case
    full_scale: float  # --full
    real_scale: float  # replicas for the figures at the releases' pixel sizes (and the paper-size projection)
    size_share: float  # ... their images at this share of the releases' pixel sizes (1 = the real sizes)
    real_repeats: int
    codec_files: int  # at most this many files of each codec in the full-decode floor pair
    seed: int
    quick: bool


DEFAULT = Settings(scale=5, repeats=5, mem_scale=2, mem_factor=10, embed_images=256, embed_repeats=2,
                   quiet_wait=20, full_scale=100, real_scale=1, size_share=1.0, real_repeats=3, codec_files=30, seed=0, quick=False)
QUICK = Settings(scale=1, repeats=1, mem_scale=0.3, mem_factor=10, embed_images=64, embed_repeats=1,
                 quiet_wait=0, full_scale=100, real_scale=0.3, size_share=0.25, real_repeats=1, codec_files=6, seed=0,
                 quick=True)


# --------------------------------------------------------------------------------------------- helpers


def _quiet_build_logs() -> None:
    """The replicas plant bad files on purpose: their warnings are expected and would drown the figures."""
    logging.getLogger("spinebench.build").setLevel(logging.ERROR)


@contextlib.contextmanager
def _no_progress_bars():
    """Progress bars go to stderr; keep the benchmark's own output readable (bars cost the same either way)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def _own_cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (pool workers included)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _system_busy() -> float | None:
    if psutil is None:
        return None
    c = psutil.cpu_times()
    return sum(c) - c.idle - getattr(c, "iowait", 0.0)


def wait_for_quiet(max_wait: float, threshold: float = QUIET_SHARE, window: float = 1.0) -> float:
    """Wait (at most `max_wait` s) until other processes use less than `threshold` of the machine.

    Called between timed cases, while this process is idle, so the system-wide CPU use is other people's.
    Returns the seconds waited. Best-of-repeats then keeps the least disturbed run.
    """
    if psutil is None or max_wait <= 0:
        return 0.0
    start = time.perf_counter()
    while psutil.cpu_percent(interval=window) / 100 > threshold:
        if time.perf_counter() - start > max_wait:
            break
    return round(time.perf_counter() - start, 1)


@dataclass
class Timing:
    wall: float
    cpu: float  # this process + waited-for children
    foreign_cpu_share: float | None  # CPU used by other processes / (wall * cores): 0 = machine was ours


def timed(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    busy0, cpu0, t0 = _system_busy(), _own_cpu(), time.perf_counter()
    value = fn()
    wall, cpu = time.perf_counter() - t0, _own_cpu() - cpu0
    busy1 = _system_busy()
    foreign = None
    if busy0 is not None and busy1 is not None and wall > 0:
        foreign = max(0.0, (busy1 - busy0) - cpu) / (wall * (os.cpu_count() or 1))
    return Timing(wall, cpu, foreign), value


def _best(timings: list[Timing]) -> dict[str, Any]:
    """Best of the repeats (shortest wall time: least disturbed by other work), plus the spread."""
    best = min(timings, key=lambda t: t.wall)
    return {"wall_s": round(best.wall, 3), "cpu_s": round(best.cpu, 3),
            "foreign_cpu_share": None if best.foreign_cpu_share is None else round(best.foreign_cpu_share, 3),
            "walls_s": [round(t.wall, 3) for t in timings],
            "median_wall_s": round(statistics.median(t.wall for t in timings), 3)}


def _mb(kib_or_bytes: float, unit: str) -> float:
    return round(kib_or_bytes / (1024 if unit == "KiB" else 2**20), 1)


def replicas(folder: Path, scale: float, seed: int) -> tuple[Path, float | None]:
    """Replica releases at `scale` in `folder`, reused when a previous run left the same ones there."""
    from build.replicas import generate

    manifest = folder / "manifest.json"
    if manifest.exists():
        head = json.loads(manifest.read_text(encoding="utf-8"))
        if head.get("scale") == float(scale) and head.get("seed") == seed:
            return folder, None
    with _no_progress_bars():
        timing, _ = timed(lambda: generate(folder, scale=scale, seed=seed))
    return folder, timing.wall


# ------------------------------------------------------------------------------ ingest against the floor


def ingest_jobs(raw: Path) -> tuple[list, dict]:
    """The files ingest standardizes, as its own readers and label map list them (not timed as floor)."""
    from build import config, ingest
    from build.labels import LabelMap
    from build.report import StageReport

    profile = config.profile("paper")
    report = StageReport("bench")
    releases = ingest.find_sources(raw, ingest.SOURCES, report)
    labelled = ingest.label_records(ingest.read_sources(releases, report), LabelMap.from_config(profile), report,
                                    releases)
    jobs = [ingest.Job(r.image_id, r.source, releases[r.source], r.path, r.frame) for r, _ in labelled]
    if any(job.path is None for job in jobs):
        raise SystemExit(f"{raw}: the benchmark reads unzipped replicas (the default layouts)")
    return jobs, profile



def floor_loop(jobs: list, max_side: int, window: tuple[float, float], reduced: bool = True) -> int:
    """The unavoidable work, nothing else: decode (with the windowing to 8 bits), resize, PNG encode.

    The same imaging code the build runs (so a faster decoder or encoder speeds both sides equally), but no
    readers, no pixel hash or quality figures, no pickling, no Parquet, no sidecars, no records table.
    `reduced=False` decodes every pixel (the full-decode floor); else only what the output needs, as the build.
    """
    from PIL import Image

    from build import imaging

    encoded = 0
    for job in jobs:
        try:
            decode_for = max_side if reduced else None
            path = job.path
            if imaging._is_dicom(path):
                pixels, _, _, source = imaging._read_dicom(path, job.frame, window, None, [], decode_for)
            else:
                pixels, _, source = imaging._read_picture(path, job.frame, window, [], decode_for)
        except imaging.ImageError:
            continue
        pixels, box = imaging._full_frame_box(pixels, source)
        image = Image.fromarray(pixels).resize(imaging.capped_size(source.width, source.height, max_side),
                                               Image.Resampling.LANCZOS, box=box,
                                               reducing_gap=imaging.RESIZE_REDUCING_GAP)
        encoded += len(imaging._encode_png(image))
    return encoded


def worker_body_loop(jobs: list, max_side: int, window: tuple[float, float]) -> int:
    """What one ingest worker does per image (standardize_file: the floor + sha256, clarity, contrast)."""
    from build import ingest

    return sum(1 for job in jobs if not isinstance(ingest.standardize_job(job, max_side, window), str))


def floor_parallel(jobs: list, max_side: int, window: tuple[float, float], processes: int) -> None:
    """The floor in `processes` bare processes, each given an interleaved share up front (no queue, no IPC)."""
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=floor_loop, args=(jobs[i::processes], max_side, window))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"floor process failed with exit code {proc.exitcode}")


def bench_ingest(raw: Path, scratch: Path, settings: Settings) -> dict[str, Any]:
    from build import ingest

    _, (jobs, profile) = timed(lambda: ingest_jobs(raw))  # the first pass also warms the page cache
    for job in jobs:
        job.path.read_bytes()
    readers = [timed(lambda: ingest_jobs(raw))[0] for _ in range(max(1, settings.repeats))]
    imaging = profile["imaging"]
    max_side, window = imaging["max_side"], tuple(imaging["percentile_window"])
    n = len(jobs)

    def run_ingest(workers: int) -> Callable[[], Any]:
        def call():
            work = scratch / f"ingest-w{workers}"
            shutil.rmtree(work, ignore_errors=True)
            with _no_progress_bars():
                return ingest.ingest(raw, work, profile, workers)
        return call

    # Compared cases run next to each other (floor_1 | ingest_1 | ingest_2 | floor_2), so a ratio is taken
    # over seconds, not minutes, of the machine's changing speed; odd repeats run the list backwards.
    cases: dict[str, Callable[[], Any]] = {
        "floor_1": lambda: floor_loop(jobs, max_side, window),
        "ingest_1": run_ingest(1),
        f"ingest_{WORKERS}": run_ingest(WORKERS),
        f"floor_{WORKERS}": lambda: floor_parallel(jobs, max_side, window, WORKERS),
        "worker_body_1": lambda: worker_body_loop(jobs, max_side, window),
    }
    runs: dict[str, list[Timing]] = {name: [] for name in cases}
    for repeat in range(settings.repeats):
        order = list(cases) if repeat % 2 == 0 else list(reversed(cases))
        for name in order:
            waited = wait_for_quiet(settings.quiet_wait)
            timing, _ = timed(cases[name])
            runs[name].append(timing)
            print(f"  {name:<14} {timing.wall:7.2f} s wall {timing.cpu:7.2f} s cpu {n / timing.wall:7.1f} img/s"
                  f"  others {timing.foreign_cpu_share or 0:4.0%}  waited {waited:4.1f} s"
                  f"  (repeat {repeat + 1}/{settings.repeats})", flush=True)

    def paired(numerator: str, denominator: str, use: str = "wall") -> dict[str, Any]:
        """Per-repeat ratio of two cases' times; the median over the repeats is the figure."""
        ratios = [getattr(a, use) / getattr(b, use) for a, b in zip(runs[numerator], runs[denominator])]
        return {"median": round(statistics.median(ratios), 3), "per_repeat": [round(r, 3) for r in ratios]}

    def median(name: str, use: str = "wall") -> float:
        return statistics.median(getattr(t, use) for t in runs[name])

    many = f"ingest_{WORKERS}"
    ratios = {
        "ingest_vs_floor": paired("floor_1", "ingest_1"),
        "ingest_vs_floor_cpu": paired("floor_1", "ingest_1", "cpu"),
        "ingest_vs_worker_body": paired("worker_body_1", "ingest_1"),
        f"ingest_{WORKERS}_vs_floor_{WORKERS}": paired(f"floor_{WORKERS}", many),
        "speedup_1_to_2": paired("ingest_1", many),
        "floor_speedup_1_to_2": paired("floor_1", f"floor_{WORKERS}"),
    }
    reader_cpu = min(t.cpu for t in readers)

    def least_cpu(name: str) -> float:  # other work only ever adds CPU time (cache, memory bandwidth)
        return min(t.cpu for t in runs[name])

    return {
        "scale": settings.scale,
        "files": n,
        "repeats": settings.repeats,
        "fairness": ("single process against single process (ingest --workers 1 maps in-process, no pool), and "
                     f"ingest with {WORKERS} workers against the floor split over {WORKERS} bare processes; same "
                     "files, page cache warm; each ratio is taken per repeat between neighbouring runs and the "
                     "median over the repeats is reported"),
        "images_per_s": {name: round(n / median(name), 1) for name in cases},  # at the median wall time
        "images_per_s_best": {name: round(n / min(t.wall for t in runs[name]), 1) for name in cases},
        "timings": {name: _best(timings) for name, timings in runs.items()},
        **{name: value["median"] for name, value in ratios.items()},
        "ratios": ratios,
        "breakdown_single_cpu_s": {  # where ingest's single-process CPU time goes (least CPU of the repeats)
            "floor_decode_resize_encode": round(least_cpu("floor_1"), 3),
            "hash_and_quality_figures": round(least_cpu("worker_body_1") - least_cpu("floor_1"), 3),
            "readers_and_labels": round(reader_cpu, 3),
            "rest_shards_sidecars_records_report": round(
                least_cpu("ingest_1") - least_cpu("worker_body_1") - reader_cpu, 3),
            "ingest_total": round(least_cpu("ingest_1"), 3),
        },
    }


def release_size_replicas(scratch: Path, settings: Settings) -> Path:
    """Replicas at `real_scale` copied at the releases' pixel sizes and codecs (benchmarks/enlarge.py)."""
    from benchmarks.enlarge import release_size_copy

    raw, _ = replicas(scratch / f"raw-{settings.real_scale:g}", settings.real_scale, settings.seed)
    started = time.perf_counter()
    big = release_size_copy(raw, scratch / f"raw-{settings.real_scale:g}-release-x{settings.size_share:g}",
                            settings.seed, settings.size_share, processes=WORKERS)
    print(f"  release-size copy ready in {time.perf_counter() - started:.0f} s", flush=True)
    return big


def bench_ingest_real_size(big: Path, scratch: Path, settings: Settings) -> dict[str, Any]:
    """The ingest figures again on the replicas at the releases' pixel sizes and codecs: the replicas'
    130-260 pixel images make every fixed per-image cost look many times larger than it is."""
    (scratch / "real-size").mkdir(exist_ok=True)
    figures = bench_ingest(big, scratch / "real-size", replace(settings, repeats=settings.real_repeats))
    return {"size_share": settings.size_share, **figures}


def codec_of(path: Path) -> str:
    """The codec a file's pixels are stored with, as CODEC_TARGETS names them."""
    import pydicom
    from PIL import Image

    from build import imaging

    if imaging._is_dicom(path):
        syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if not syntax.is_compressed:
            return "uncompressed"
        return "JPEG 2000" if "2000" in syntax.name else syntax.name.split(" ")[0]
    with Image.open(path) as image:
        return image.format or "unknown"


def bench_codecs(big: Path, settings: Settings) -> dict[str, Any]:
    """Per codec, at the releases' pixel sizes: (a) the full-decode floor (every pixel decoded, then window,
    resize, PNG encode) against (b) the project (an ingest worker's whole job per image: reduced decode,
    window, resize, PNG encode, pixel hash, quality figures), each ratio taken per repeat between neighbours."""
    from build import imaging

    jobs, profile = ingest_jobs(big)
    max_side, window = profile["imaging"]["max_side"], tuple(profile["imaging"]["percentile_window"])
    groups: dict[tuple[str, str], list] = {}
    for job in jobs:
        try:
            groups.setdefault((job.source, codec_of(job.path)), []).append(job)
        except Exception:  # noqa: BLE001, S112 - the planted broken files: not a codec figure
            continue
    result: dict[str, Any] = {"fairness": "same files, page cache warm, 1 process each; per-repeat ratio of "
                              "neighbouring runs, median over the repeats", "codecs": {}}
    for (source, codec), members in sorted(groups.items()):
        chosen = members[:: max(1, len(members) // settings.codec_files)][: settings.codec_files]
        for job in chosen:
            job.path.read_bytes()
        sizes = []
        for job in chosen:
            try:
                sizes.append(imaging.standardize_file(job.path, job.frame, max_side, window))
            except imaging.ImageError:
                pass
        cases = {"full_decode_floor": lambda c=chosen: floor_loop(c, max_side, window, reduced=False),
                 "project": lambda c=chosen: worker_body_loop(c, max_side, window)}
        runs: dict[str, list[Timing]] = {name: [] for name in cases}
        for repeat in range(settings.real_repeats):
            for name in (list(cases) if repeat % 2 == 0 else list(reversed(cases))):
                wait_for_quiet(settings.quiet_wait)
                runs[name].append(timed(cases[name])[0])
        ratios = [a.wall / b.wall for a, b in zip(runs["full_decode_floor"], runs["project"])]
        ratios_cpu = [a.cpu / b.cpu for a, b in zip(runs["full_decode_floor"], runs["project"]) if b.cpu > 0]
        n = len(chosen)
        figures = {
            "source": source, "codec": codec, "files": n, "of": len(members),
            "mean_source_pixels": round(statistics.mean(im.source_width * im.source_height for im in sizes))
            if sizes else None,
            "reduced_decode": CODEC_REDUCTION.get(codec, "none here: full decode, box average before the window"),
            "ms_per_image": {name: round(1000 * statistics.median(t.wall for t in runs[name]) / n, 1)
                             for name in cases},
            "cpu_ms_per_image": {name: round(1000 * min(t.cpu for t in runs[name]) / n, 1) for name in cases},
            "project_vs_full_decode": round(statistics.median(ratios), 3),
            "project_vs_full_decode_cpu": round(statistics.median(ratios_cpu), 3) if ratios_cpu else None,
            "per_repeat": [round(r, 3) for r in ratios],
        }
        result["codecs"][f"{source} {codec}"] = figures
        print(f"  {source:<5} {codec:<13} {n:3d} of {len(members):3d} files (mean {figures['mean_source_pixels'] or 0:,}"
              f" px): full decode {figures['ms_per_image']['full_decode_floor']} ms, project "
              f"{figures['ms_per_image']['project']} ms -> {figures['project_vs_full_decode']:.2f}x", flush=True)
    return result


def bench_projection(big: Path, scratch: Path, settings: Settings, codecs: dict[str, Any],
                     real: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    """The paper-size build at real pixel sizes, extrapolated from a measured build of the release-size
    replicas, which hold the paper's per-source mix at real_scale / PAPER_SCALE of its size.

    In CPU seconds, which a busy machine changes far less than wall time: each stage's fixed cost (imports,
    card figures, the folder check's start) comes from the two memory builds (N and 10N images: a + b n),
    its per-image cost from the release-size build; the paper size is then a + b' x its images. On an idle
    machine the 2-worker ingest takes its CPU seconds / WORKERS, the other stages theirs. Per source, the
    ingest minutes are the project's CPU time per image of each of its codecs (bench_codecs) x its image
    count at paper size / WORKERS / the worker body's share of ingest's CPU time."""
    wait_for_quiet(settings.quiet_wait)
    figures = measured_build(big, scratch / "build-release-size", scratch / "build-release-size.log")
    factor = PAPER_SCALE / settings.real_scale
    n_sample, n_paper = figures["images"], round(figures["images"] * factor)
    small, large = memory["N"], memory["10N"]
    projected_cpu, idle_wall = {}, {}
    for stage, sample_cpu in figures["cpu_seconds"].items():
        fixed = _fixed_cost(small, large, stage, sample_cpu)
        projected_cpu[stage] = round(fixed + max(0.0, sample_cpu - fixed) / n_sample * (n_paper if stage != "imports"
                                                                                        else n_sample), 1)
        idle_wall[stage] = round(projected_cpu[stage] / (WORKERS if stage == "ingest" else 1), 1)
    breakdown = real["breakdown_single_cpu_s"]
    body_share = ((breakdown["floor_decode_resize_encode"] + breakdown["hash_and_quality_figures"])
                  / breakdown["ingest_total"])
    result = {
        "method": (f"measured: a full build (ingest with {WORKERS} workers, items with the fallback embedder, "
                   f"export, check) of the replicas at scale {settings.real_scale:g} copied at the releases' pixel "
                   f"sizes and codecs ({n_sample} images, {100 * settings.real_scale / PAPER_SCALE:g}% of the "
                   "paper's build, same per-source mix), in CPU seconds; projected: each stage's fixed cost (from "
                   "the N and 10N memory builds) + its per-image cost x the paper's images; idle-machine wall = "
                   f"CPU / {WORKERS} for ingest, CPU for the rest. Extrapolated, not measured at full size"),
        "sample_images": n_sample,
        "sample_seconds": figures["seconds"],
        "sample_cpu_seconds": figures["cpu_seconds"],
        "sample_peak_mb": figures["peak_mb"],
        "sample_peak_tree_pss_mb": figures.get("peak_tree_pss_mb"),
        "sample_stage_peak_mb": figures.get("stage_peak_mb"),
        "projected_images": n_paper,
        "projected_cpu_seconds": projected_cpu,
        "projected_seconds": idle_wall,
        "projected_total_minutes": round(sum(idle_wall.values()) / 60, 1),
        "peak_mb": figures["peak_mb"],
        "ingest_minutes_by_source": _ingest_by_source(codecs, factor, body_share),
    }
    print(f"  sample: {n_sample} images, CPU s {figures['cpu_seconds']} (wall {figures['seconds']}), peak "
          f"{figures['peak_mb']} MB -> paper size ~{n_paper:,} images, idle 2-core seconds {idle_wall}, total "
          f"~{result['projected_total_minutes']} min; ingest minutes by source {result['ingest_minutes_by_source']}",
          flush=True)
    return result


def _fixed_cost(small: dict[str, Any], large: dict[str, Any], stage: str, ceiling: float) -> float:
    """The a of a + b n through the N and 10N builds' CPU seconds of `stage`, kept within [0, ceiling]."""
    n0, n1 = small["images"], large["images"]
    t0, t1 = small.get("cpu_seconds", {}).get(stage), large.get("cpu_seconds", {}).get(stage)
    if t0 is None or t1 is None or n1 <= n0:
        return 0.0
    return min(ceiling, max(0.0, (t0 * n1 - t1 * n0) / (n1 - n0)))


def _ingest_by_source(codecs: dict[str, Any], factor: float, body_share: float) -> dict[str, float]:
    """Minutes of a 2-worker ingest per source at paper size on an idle machine (see bench_projection)."""
    minutes: dict[str, float] = {}
    for figures in codecs["codecs"].values():
        seconds = figures["cpu_ms_per_image"]["project"] / 1000 * figures["of"] * factor / WORKERS / body_share
        minutes[figures["source"]] = minutes.get(figures["source"], 0.0) + seconds / 60
    return {source: round(value, 1) for source, value in sorted(minutes.items())}


# ----------------------------------------------------------------------------------- memory of a build


def child_build(raw: Path, out: Path, workers: int) -> int:
    """Run in a fresh interpreter: ingest + items + export + check; print one JSON line of figures.

    Per-stage peaks come from sampling this process (and its pool workers) from a thread, not from
    ru_maxrss: Linux carries the parent's high-water mark into a child across fork and exec, so RUSAGE_SELF
    here starts at whatever the benchmark process held when it started the build.
    """
    _quiet_build_logs()
    times: dict[str, float] = {}
    sampler = TreeSampler(os.getpid(), interval=0.05, pss=False) if psutil is not None else None
    stage_peaks: dict[str, dict[str, float]] = {}
    if sampler:
        sampler.start()

    cpu: dict[str, float] = {}
    cpu_mark = [_own_cpu()]

    def mark(stage: str, started: float) -> None:
        times[stage] = time.perf_counter() - started
        cpu[stage], cpu_mark[0] = _own_cpu() - cpu_mark[0], _own_cpu()  # pool workers are reaped by then
        if sampler:
            main, tree = sampler.take_stage_peaks()
            stage_peaks[stage] = {"main_mb": _mb(main, "B"), "tree_mb": _mb(tree, "B")}

    t0 = time.perf_counter()
    from build import config, export, hubcheck, ingest, items

    mark("imports", t0)
    profile = config.profile("paper")
    work = out / "work"
    with _no_progress_bars():
        t = time.perf_counter()
        report = ingest.ingest(raw, work, profile, workers)
        mark("ingest", t)
        t = time.perf_counter()
        items_report = items.make_items(work, profile, "fallback", 32, "cpu", None)
        mark("items", t)
        t = time.perf_counter()
        folder = export.export(work, out)
        mark("export", t)
        t = time.perf_counter()
        check = hubcheck.check(folder)
        mark("check", t)
    if sampler:
        sampler.stop()
    figures = {
        "images": sum(report.counts.get("images", {}).values()),
        "items": dict(items_report.counts.get("items", {})),
        "check_ok": check.ok,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},  # this process + its reaped pool workers
        "stage_peak_mb": stage_peaks,  # per stage: this process alone, and with its pool workers (RSS sums)
        # ru_maxrss (KiB on Linux) of the largest pool worker: exact, workers are forked from this process
        "maxrss_largest_worker_mb": _mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "KiB"),
    }
    print("BENCH-RESULT " + json.dumps(figures), flush=True)
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed memory of a process and all its descendants (pool workers) every `interval` s.

    RSS sums count pages that forked workers share with their parent more than once (an upper bound); PSS
    splits shared pages between the processes that map them (the true total). Also keeps the peaks since
    the last `take_stage_peaks()` call, of the process alone and of the tree.
    """

    def __init__(self, pid: int, interval: float = 0.1, pss: bool = True) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.pss = pid, interval, pss
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self._stage_main = self._stage_tree = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            self.sample(root)
            self._halt.wait(self.interval)

    def sample(self, root) -> None:
        rss = pss = main = 0
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        for proc in procs:
            try:
                info = proc.memory_full_info() if self.pss else proc.memory_info()
            except psutil.Error:
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            if proc.pid == self.pid:
                main = info.rss
        with self._lock:
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stage_main, self._stage_tree = max(self._stage_main, main), max(self._stage_tree, rss)
        self.peak_processes = max(self.peak_processes, len(procs))
        self.samples += 1

    def take_stage_peaks(self) -> tuple[int, int]:
        """(process, tree) RSS peaks since the previous call, including one sample taken now."""
        try:
            self.sample(psutil.Process(self.pid))
        except psutil.Error:
            pass
        with self._lock:
            peaks = self._stage_main, self._stage_tree
            self._stage_main = self._stage_tree = 0
        return peaks

    def stop(self) -> None:
        self._halt.set()
        self.join()


def measured_build(raw: Path, out: Path, log: Path) -> dict[str, Any]:
    """A full build in a fresh subprocess, its memory sampled from outside; the child's own figures added."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "benchmarks.bench", "--child-build", "--raw", str(raw), "--build-out", str(out),
               "--workers", str(WORKERS)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as errors:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        sampler = TreeSampler(child.pid) if psutil is not None else None
        if sampler:
            sampler.start()
        stdout, _ = child.communicate()
        if sampler:
            sampler.stop()
    if child.returncode != 0:
        raise RuntimeError(f"build subprocess failed ({child.returncode}); see {log}:\n"
                           + log.read_text(encoding="utf-8")[-3000:])
    line = next(x for x in stdout.splitlines() if x.startswith("BENCH-RESULT "))
    figures = json.loads(line.removeprefix("BENCH-RESULT "))
    figures["wall_s"] = round(time.perf_counter() - start, 2)
    if sampler:
        figures.update(peak_tree_rss_mb=_mb(sampler.peak_rss, "B"), peak_tree_pss_mb=_mb(sampler.peak_pss, "B"),
                       peak_processes=sampler.peak_processes, samples=sampler.samples)
    # the figure the targets use: the sampled sum over the process tree (RSS: an upper bound), else getrusage
    if "peak_tree_rss_mb" not in figures:  # no psutil: ru_maxrss of the build's main (inherited high-water
        # marks included, see child_build) plus every worker at the largest worker's peak: an upper bound
        usage = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        figures["peak_tree_rss_mb"] = _mb(usage, "KiB") + WORKERS * figures["maxrss_largest_worker_mb"]
    figures["peak_mb"] = figures["peak_tree_rss_mb"]
    return figures


def _growth(small: dict[str, Any], large: dict[str, Any]) -> float:
    """Peak at 10N / peak at N in PSS, the memory the build really holds, when psutil could measure it.

    The RSS sum would count the ~150 MB of library pages each forked worker shares with the main process
    once per process: a constant that makes any growth look smaller than it is.
    """
    key = "peak_tree_pss_mb" if "peak_tree_pss_mb" in small and "peak_tree_pss_mb" in large else "peak_mb"
    return round(large[key] / small[key], 3)


def bench_memory(scratch: Path, settings: Settings) -> dict[str, Any]:
    sizes = {"N": settings.mem_scale, "10N": settings.mem_scale * settings.mem_factor}
    result: dict[str, Any] = {
        "method": ("psutil: the build subprocess and its pool workers sampled every 0.1 s from outside, "
                   "summed RSS (peak_mb, an upper bound: forked workers share pages) and PSS; per-stage peaks "
                   "sampled inside the build (stage_peak_mb); ru_maxrss (RUSAGE_CHILDREN) of the largest worker")
                  if psutil is not None else
                  "getrusage only (psutil missing): the build's ru_maxrss + workers x largest worker's ru_maxrss",
        "workers": WORKERS,
    }
    for label, scale in sizes.items():
        raw, generated = replicas(scratch / f"raw-{scale:g}", scale, settings.seed)
        print(f"  build at scale {scale:g} ({label}) in a fresh subprocess ...", flush=True)
        wait_for_quiet(settings.quiet_wait)
        figures = measured_build(raw, scratch / f"build-{scale:g}", scratch / f"build-{scale:g}.log")
        result[label] = {"scale": scale, "replicas_s": generated, **figures}
        print(f"    {figures['images']} images, peak {figures['peak_mb']} MB "
              f"(PSS {figures.get('peak_tree_pss_mb')} MB), stages {figures['seconds']}", flush=True)
    small, large = result["N"], result["10N"]
    result["images_ratio"] = round(large["images"] / max(1, small["images"]), 2)
    result["growth_10x_rss"] = round(large["peak_mb"] / small["peak_mb"], 3)
    result["growth_10x_pss"] = (round(large["peak_tree_pss_mb"] / small["peak_tree_pss_mb"], 3)
                                if "peak_tree_pss_mb" in small else None)
    result["growth_10x"] = _growth(small, large)
    result["peak_mb"] = max(small["peak_mb"], large["peak_mb"])
    return result


# ------------------------------------------------------------------------------------------ embedding


def sample_images(work: Path, count: int) -> list:
    """`count` standardized images spread evenly over the shards (all sources and sizes), decoded in memory."""
    import pyarrow.parquet as pq
    from PIL import Image

    blobs: list[bytes] = []
    for shard in sorted((work / "images").glob("images-*.parquet")):
        blobs += pq.read_table(shard, columns=["png"]).column("png").to_pylist()
    step = max(1, len(blobs) // count)
    images = []
    for blob in blobs[::step][:count]:
        image = Image.open(io.BytesIO(blob))
        image.load()
        images.append(image)
    while len(images) < count:  # tiny scales: reuse
        images.append(images[len(images) % max(1, len(blobs))])
    return images


def bench_embedding(work: Path, scratch: Path, settings: Settings) -> dict[str, Any]:
    import torch
    import transformers

    from build.embedders import FallbackEmbedder, Siglip2Embedder

    transformers.logging.set_verbosity_error()  # tiny random configs trip harmless vocabulary warnings
    transformers.logging.disable_progress_bar()

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_siglip2

    images = sample_images(work, settings.embed_images)
    model_dir = build_tiny_siglip2(scratch / "tiny-siglip2")
    siglip = Siglip2Embedder(str(model_dir), batch_size=1)
    result: dict[str, Any] = {
        "images": len(images),
        "mean_pixels": round(sum(im.width * im.height for im in images) / len(images)),
        "torch_threads": torch.get_num_threads(),
        "note": "pre-decoded standard images (PNG decode not timed); best of the repeats after a warm-up batch",
        "siglip2_tiny_images_per_s": {},
    }
    for size in BATCH_SIZES:
        siglip.batch_size = size
        siglip.embed(images[:size])  # warm-up: first-call allocations
        wait_for_quiet(settings.quiet_wait)
        best = min(timed(lambda: siglip.embed(images))[0].wall for _ in range(settings.embed_repeats))
        result["siglip2_tiny_images_per_s"][str(size)] = round(len(images) / best, 1)
    fallback = FallbackEmbedder()
    fallback.embed(images[:8])
    wait_for_quiet(settings.quiet_wait)
    best = min(timed(lambda: fallback.embed(images))[0].wall for _ in range(settings.embed_repeats))
    result["fallback_images_per_s"] = round(len(images) / best, 1)
    return result


# ------------------------------------------------------------------------------------------ full size


def bench_full(scratch: Path, settings: Settings) -> dict[str, Any]:
    """The paper-scale build, stage by stage; and, since its buffers are all full at that size, a second
    memory figure: a build at a tenth of it (N) against the full build (10N)."""
    print(f"  replicas at scale {settings.full_scale:g} ...", flush=True)
    raw, generated = replicas(scratch / f"raw-{settings.full_scale:g}", settings.full_scale, settings.seed)
    print("  full build in a fresh subprocess ...", flush=True)
    wait_for_quiet(settings.quiet_wait)
    figures = measured_build(raw, scratch / "build-full", scratch / "build-full.log")
    shutil.rmtree(scratch / "build-full" / "spinebench", ignore_errors=True)  # GBs of Parquet; work/ is kept
    seconds = {"replicas": None if generated is None else round(generated, 1), **figures["seconds"]}
    result = {"run": True, "scale": settings.full_scale, "images": figures["images"], "items": figures["items"],
              "seconds": seconds, "replicas_reused": generated is None,
              **{k: v for k, v in figures.items() if k not in ("seconds", "images", "items")}}
    print(f"    {figures['images']} images, items {figures['items']}, seconds {seconds}, peak {figures['peak_mb']} MB",
          flush=True)
    tenth = settings.full_scale / settings.mem_factor
    print(f"  build at scale {tenth:g} (a tenth of the full size) in a fresh subprocess ...", flush=True)
    raw_tenth, _ = replicas(scratch / f"raw-{tenth:g}", tenth, settings.seed)
    wait_for_quiet(settings.quiet_wait)
    small = measured_build(raw_tenth, scratch / f"build-{tenth:g}", scratch / f"build-{tenth:g}.log")
    result["tenth"] = {"scale": tenth, **small}
    result["memory_growth_10x"] = _growth(small, figures)
    result["memory_growth_10x_rss"] = round(figures["peak_mb"] / small["peak_mb"], 3)
    print(f"    {small['images']} images, peak {small['peak_mb']} MB -> growth to the full size "
          f"{result['memory_growth_10x']}x", flush=True)
    return result


# ------------------------------------------------------------------------------------------ the report


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure against its target: `met` True or False; None in a --quick run, whose single repeat on
    tiny inputs is a smoke test (it once showed ingest faster than its own floor), not a measurement."""
    ingest, real, memory = results["ingest"], results["ingest_real_size"], results["memory"]
    peaks = [memory["peak_mb"]] + ([results["full"]["peak_mb"]] if results["full"].get("run") else [])
    rows = [
        ("ingest_vs_floor", ingest["ingest_vs_floor"], ">=", TARGETS["ingest_vs_floor"]),
        ("ingest_vs_floor_real_size", real["ingest_vs_floor"], ">=", TARGETS["ingest_vs_floor"]),
        ("speedup_1_to_2", ingest["speedup_1_to_2"], ">=", TARGETS["speedup_1_to_2"]),
        ("speedup_1_to_2_real_size", real["speedup_1_to_2"], ">=", TARGETS["speedup_1_to_2_real_size"]),
        ("memory_growth_10x", memory["growth_10x"], "<", TARGETS["memory_growth_10x"]),
        ("memory_peak_mb", max(peaks), "<", TARGETS["memory_peak_mb"]),
        ("projection_peak_mb", results["projection"]["peak_mb"], "<", TARGETS["projection_peak_mb"]),
    ]
    for name, figures in results["codecs"]["codecs"].items():
        if figures["codec"] in CODEC_TARGETS:
            rows.append((f"project_vs_full_decode {name}", figures["project_vs_full_decode"], ">=",
                         CODEC_TARGETS[figures["codec"]]))
    if results["full"].get("run"):
        rows.insert(3, ("memory_growth_10x_full_size", results["full"]["memory_growth_10x"], "<",
                        TARGETS["memory_growth_10x"]))
    quick = results["settings"]["quick"]
    return [{"name": name, "value": value, "target": f"{op} {target}",
             "met": None if quick else (value >= target if op == ">=" else value < target)}
            for name, value, op, target in rows]


def machine() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1) if psutil else None,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--", "build"))}


def print_summary(results: dict[str, Any]) -> None:
    ingest, real, memory, embedding, full, projection = (
        results[k] for k in ("ingest", "ingest_real_size", "memory", "embedding", "full", "projection"))
    rate = ingest["images_per_s"]  # at the median wall time
    lines = [
        "",
        f"SpineBench benchmark ({'quick' if results['settings']['quick'] else 'default'}; "
        f"{results['machine']['cpus']} CPUs, load {results['machine']['load_average']})",
        f"ingest ({ingest['files']} files, scale {ingest['scale']:g}, single process):",
        f"  floor {rate['floor_1']} img/s, worker body {rate['worker_body_1']} img/s, ingest {rate['ingest_1']} img/s"
        f"  -> ingest/floor {ingest['ingest_vs_floor']:.3f} (CPU-time ratio {ingest['ingest_vs_floor_cpu']:.3f})",
        f"  CPU seconds: {ingest['breakdown_single_cpu_s']}",
        f"ingest, {WORKERS} workers: floor {rate[f'floor_{WORKERS}']} img/s, ingest {rate[f'ingest_{WORKERS}']} img/s"
        f" -> {ingest[f'ingest_{WORKERS}_vs_floor_{WORKERS}']:.3f}",
        f"speed-up 1 -> {WORKERS} workers: ingest {ingest['speedup_1_to_2']:.3f}x, floor "
        f"{ingest['floor_speedup_1_to_2']:.3f}x (what the machine gave)",
        f"at the releases' pixel sizes ({real['files']} files, sizes x{real['size_share']:g}): floor "
        f"{real['images_per_s']['floor_1']} img/s, ingest {real['images_per_s']['ingest_1']} img/s -> ingest/floor "
        f"{real['ingest_vs_floor']:.3f}; speed-up 1 -> {WORKERS} workers {real['speedup_1_to_2']:.3f}x "
        f"(floor {real['floor_speedup_1_to_2']:.3f}x)",
        f"memory: N = {memory['N']['images']} images -> {memory['N']['peak_mb']} MB, 10N = {memory['10N']['images']}"
        f" images -> {memory['10N']['peak_mb']} MB (RSS sums); growth {memory['growth_10x']:.3f}x in PSS "
        f"({memory['growth_10x_rss']:.3f}x in RSS)",
        f"  peak by stage at 10N (main process / with workers): {memory['10N'].get('stage_peak_mb')}",
        "per codec at the releases' pixel sizes: ms per image, full-decode floor -> project (ratio):",
        *[f"  {name:<24} {c['ms_per_image']['full_decode_floor']:7.1f} -> {c['ms_per_image']['project']:6.1f} "
          f"({c['project_vs_full_decode']:.2f}x, {c['files']} of {c['of']} files; reduced decode: {c['reduced_decode']})"
          for name, c in results["codecs"]["codecs"].items()],
        f"paper-size projection: {projection['method']}",
        f"  -> ~{projection['projected_images']:,} images: stage seconds {projection['projected_seconds']}, total "
        f"~{projection['projected_total_minutes']} min; ingest minutes by source {projection['ingest_minutes_by_source']};"
        f" sample peak {projection['peak_mb']} MB",
        f"embedding ({embedding['images']} images): tiny SigLIP2 img/s by batch size "
        f"{embedding['siglip2_tiny_images_per_s']}; fallback {embedding['fallback_images_per_s']} img/s",
    ]
    if full.get("run"):
        lines.append(f"full (scale {full['scale']:g}): {full['images']} images, items {full['items']}, "
                     f"seconds {full['seconds']}, peak {full['peak_mb']} MB (PSS {full.get('peak_tree_pss_mb')} MB);"
                     f" a tenth ({full['tenth']['images']} images) peaks at {full['tenth']['peak_mb']} MB: growth "
                     f"{full['memory_growth_10x']}x")
        lines.append(f"  full-size peak by stage (main process / with workers): {full.get('stage_peak_mb')}")
    else:
        lines.append("full: not run (add --full)")
    quick = results["settings"]["quick"]
    lines.append("targets" + (" (quick run: one repeat on tiny inputs, the figures are NOT meaningful and are not "
                              "judged; run without --quick to measure):" if quick else ":"))
    for v in results["targets"]:
        verdict = "n/a   " if v["met"] is None else "MET   " if v["met"] else "MISSED"
        lines.append(f"  {verdict} {v['name']}: {v['value']} (target {v['target']})")
    print("\n".join(lines), flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and one repeat: a smoke run, not a measurement")
    p.add_argument("--full", action="store_true", help="also the paper-scale run (scale 100, many minutes)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--work", type=Path, help="keep replicas and builds here (reused next time); default: a temp dir")
    p.add_argument("--scale", type=float, help="replica scale of the ingest and embedding figures")
    p.add_argument("--mem-scale", type=float, help="N of the memory figure (10N is ten times it)")
    p.add_argument("--repeats", type=int, help="timed repeats of each ingest case (best counts)")
    p.add_argument("--embed-images", type=int, help="images embedded per batch size")
    p.add_argument("--full-scale", type=float, help=argparse.SUPPRESS)
    p.add_argument("--real-scale", type=float, help="replica scale of the figures at the releases' pixel sizes")
    p.add_argument("--size-share", type=float, help="their images at this share of the releases' pixel sizes "
                   "(default 1: the real sizes)")
    p.add_argument("--real-repeats", type=int, help="timed repeats at the releases' pixel sizes (default 3)")
    p.add_argument("--quiet-wait", type=float, help="at most this many seconds of waiting for a quiet machine before "
                   "each timed case (default 20; a machine that is never quiet wastes them all)")
    p.add_argument("--codec-files", type=int, help="at most this many files per codec in the full-decode floor pair")
    # internal: one measured build in a fresh interpreter
    p.add_argument("--child-build", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--build-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=WORKERS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child_build:
        return child_build(args.raw, args.build_out, args.workers)
    _quiet_build_logs()
    base = QUICK if args.quick else DEFAULT
    overrides = {"scale": args.scale, "mem_scale": args.mem_scale, "repeats": args.repeats,
                 "embed_images": args.embed_images, "full_scale": args.full_scale, "real_scale": args.real_scale,
                 "size_share": args.size_share, "codec_files": args.codec_files, "quiet_wait": args.quiet_wait,
                 "real_repeats": args.real_repeats}
    settings = Settings(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})
    scratch = args.work or Path(tempfile.mkdtemp(prefix="spinebench-bench."))
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"settings": asdict(settings), "machine": machine(), "targets_spec": TARGETS}
    started = time.perf_counter()
    try:
        print(f"[1/7] ingest against the floor (replicas scale {settings.scale:g}) in {scratch}", flush=True)
        raw, _ = replicas(scratch / f"raw-{settings.scale:g}", settings.scale, settings.seed)
        results["ingest"] = bench_ingest(raw, scratch, settings)
        print(f"[2/7] the same at the releases' pixel sizes and codecs (replicas scale {settings.real_scale:g}, "
              f"sizes x{settings.size_share:g})", flush=True)
        big = release_size_replicas(scratch, settings)
        results["ingest_real_size"] = bench_ingest_real_size(big, scratch, settings)
        print("[3/7] per codec at the releases' pixel sizes: the full-decode floor against the project", flush=True)
        results["codecs"] = bench_codecs(big, settings)
        print("[4/7] peak memory of a full build at N and 10N", flush=True)
        results["memory"] = bench_memory(scratch, settings)
        print("[5/7] the paper-size build at real pixel sizes, projected from the release-size replicas", flush=True)
        results["projection"] = bench_projection(big, scratch, settings, results["codecs"], results["ingest_real_size"],
                                                 results["memory"])
        print("[6/7] full-size run" + ("" if args.full else ": skipped (--full)"), flush=True)
        results["full"] = bench_full(scratch, settings) if args.full else {"run": False}
        print("[7/7] embedding throughput", flush=True)
        results["embedding"] = bench_embedding(scratch / f"ingest-w{WORKERS}", scratch, settings)
        results["costs"] = __import__("benchmarks.costs").costs.run(scratch, settings)  # prints its own rows
    finally:
        if args.work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = verdicts(results)
    print_summary(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
