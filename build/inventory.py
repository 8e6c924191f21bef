"""Check a raw download before a long build: where each release is, how complete, whether its files decode.

    python -m build inventory --raw RAW [--workers N] [--sources S ...]

Per source: where the release root was found (by its signature, at any depth, in a folder or a zip) and
its layout, image files and annotations counted against what the release holds (docs/sources.md), the
records the reader makes of them, a decode check of a few files per transfer syntax (or image format),
and an estimate of the ingest time from the decode times. Nothing is written. Run it first, fix the
layout it reports, then build.

Exit code: 0 when every source was found and every checked file decoded, 4 (as ingest) when a source is
missing, doubled or misconfigured, 3 when a checked file did not decode.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pydicom

from build.imaging import ImageError, standardize_file
from build.ingest import EXIT_REJECTED, EXIT_SOURCE, add_sources
from build.report import StageReport
from build.sources import EXPECTED, HEADER_FACTS, READERS, Release, SourceError, find, rsna, vindr

COMMAND = "inventory"
HELP = "check a raw download (where each release is, counts, decoding) before building"
SAMPLE = 40  # files whose header is read to find the transfer syntaxes in use
DECODED = 2  # files decoded per transfer syntax or format
# What the releases hold (docs/sources.md): image files, and the annotations that label them
FILES = {"buu": (".jpg", 800), "csxa": (".png", 4963), "rsna": (".dcm", 147_218), "vindr": (".dicom", 10_466)}
ANNOTATIONS = {"buu": ("endplate CSVs", 800), "csxa": ("keypoint JSONs", 4963),
               "rsna": ("coordinate rows", 48_692), "vindr": ("box rows in annotations/train.csv", 19_550)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=Path, required=True, help="folder holding buu/ csxa/ rsna/ vindr/")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="for the time estimate")
    add_sources(parser)


@dataclass
class Inventory:
    source: str
    found_at: str = ""
    layout: str = ""
    problem: str = ""  # why the release cannot be read (nothing else is filled in then)
    files: int = 0
    annotations: int = 0
    records: int = 0
    rejected: int = 0
    decoding: dict[str, list[str]] = field(default_factory=dict)  # syntax or format -> "ok 0.03 s" / reason
    seconds_per_image: float = 0.0


def main(args: argparse.Namespace) -> int:
    results = [inventory(source, args.raw / source) for source in args.sources]
    print(render(results, args.workers))
    if any(r.problem for r in results):
        return EXIT_SOURCE
    return EXIT_REJECTED if any(not v.startswith("ok") for r in results for vs in r.decoding.values()
                                for v in vs) else 0


def inventory(source: str, folder: Path) -> Inventory:
    result = Inventory(source)
    try:
        release = find(source, folder)
    except SourceError as error:
        result.problem = str(error)
        return result
    result.found_at, result.layout = f"{source}/{release.shown()}", describe(release)
    suffix = FILES[source][0]
    images = [rel for rel in release.files() if rel.lower().endswith(suffix)]
    result.files = len(images)
    result.annotations = annotations(source, release)
    report = StageReport("inventory")
    records = list(READERS[source](release, report))
    result.records, result.rejected = len(records), len(report.rejected)
    decode_check(release, [r.path for r in records], source, result)
    return result


def describe(release: Release) -> str:
    """The layout in the words of docs/sources.md: zip or folder, and how the root sits in RAW/<source>."""
    root = release.root
    if "physionet.org/files/" in f"{root}/":
        shape = "PhysioNet wget mirror"
    elif not root:
        shape = "flat (the release's files straight in the folder)"
    else:
        depth = root.count("/") + 1
        shape = f"nested {depth} level{'s' if depth > 1 else ''} down"
    return f"{release.layout}, {shape}"


def annotations(source: str, release: Release) -> int:
    if source == "buu":
        return sum(1 for rel in release.files() if rel.lower().endswith(".csv") and "/" in rel)
    if source == "csxa":
        return sum(1 for rel in release.files() if rel.lower().endswith(".json"))
    table = rsna.MARKER if source == "rsna" else vindr.MARKER
    with io.TextIOWrapper(release.open(table), encoding="utf-8-sig", errors="replace", newline="") as handle:
        return max(sum(1 for row in csv.reader(handle) if row) - 1, 0)


def decode_check(release: Release, paths: list[str], source: str, result: Inventory) -> None:
    """Decode up to DECODED files per transfer syntax (DICOM) or format, timed as ingest would."""
    step = max(1, len(paths) // SAMPLE)
    groups: dict[str, list[str]] = defaultdict(list)
    for rel in paths[::step][:SAMPLE]:
        groups[kind(release, rel)].append(rel)
    timings = []
    for name, rels in sorted(groups.items()):
        for rel in rels[:DECODED]:
            start = time.perf_counter()
            try:
                standardize_file(release.pixels(rel), header_facts=HEADER_FACTS.get(source))
            except (ImageError, OSError) as error:
                result.decoding.setdefault(name, []).append(f"{release.shown(rel)}: {error}")
                continue
            seconds = time.perf_counter() - start
            timings.append(seconds)
            result.decoding.setdefault(name, []).append(f"ok {seconds:.2f} s")
    result.seconds_per_image = sum(timings) / len(timings) if timings else 0.0


def kind(release: Release, rel: str) -> str:
    """The file's transfer syntax name (DICOM) or image format (its suffix)."""
    suffix = PurePosixPath(rel).suffix.lower()
    if suffix not in (".dcm", ".dicom"):
        return suffix.lstrip(".").upper()
    try:
        with release.open(rel) as handle:
            meta = pydicom.dcmread(handle, stop_before_pixels=True).file_meta
        return meta.TransferSyntaxUID.name
    except Exception as error:  # noqa: BLE001 - an unreadable header is what the check reports
        return f"unreadable header ({type(error).__name__})"


def render(results: Iterable[Inventory], workers: int) -> str:
    lines, total = [], 0.0
    for r in results:
        lines.append(f"{r.source}:")
        if r.problem:
            lines += [f"  NOT USABLE: {line}" for line in r.problem.splitlines()]
            continue
        expected_files, (what, expected_annotations) = FILES[r.source][1], ANNOTATIONS[r.source]
        count, unit = EXPECTED[r.source]
        lines += [
            f"  found at   RAW/{r.found_at} ({r.layout})",
            f"  files      {r.files:,} {FILES[r.source][0]} of {expected_files:,} in the release"
            f"{shortfall(r.files, expected_files)}",
            f"  annotated  {r.annotations:,} {what} of {expected_annotations:,}"
            f"{shortfall(r.annotations, expected_annotations)}",
            f"  records    {r.records:,} images read ({r.rejected} rejected; the release has {count:,} {unit})",
        ]
        for name, outcomes in r.decoding.items():
            lines.append(f"  decode     {name}: {'; '.join(outcomes)}")
        estimate = r.records * r.seconds_per_image / max(workers, 1)
        total += estimate
        lines.append(f"  estimate   {estimate:,.0f} s to standardize with {workers} worker(s) "
                     f"({r.seconds_per_image:.3f} s per image)")
    lines.append(f"estimated ingest time: {total:,.0f} s ({total / 60:,.1f} min) with {workers} worker(s)")
    return "\n".join(lines)


def shortfall(found: int, expected: int) -> str:
    return f"  << FAR BELOW ({found / expected:.1%})" if found < 0.5 * expected else ""

