"""Read the raw releases, label every image, and standardize the pixels into Parquet image shards.

    python -m build ingest --raw RAW --work WORK [--profile paper] [--workers N]

RAW holds one folder per source (buu/ csxa/ rsna/ vindr/), each the release as downloaded: unzipped or still
zipped, the release root at any depth (found by its signature files). Every source asked for (all four
unless --sources names fewer) must be found before anything is written. WORK receives:
  images/images-NNNNN.parquet   image shards: image_id, png (8-bit grayscale, lossless), width, height, sha256
  images/images-NNNNN.json      the shard's figures and rejected files; written last, so it marks the shard done
  records.parquet               one row per standardized image: provenance, raw findings, disease, levels, figures
  sources.json                  per source: where its release was found, its layout, its count vs the release's
  ingest_report.json            counts per source and disease, every rejected or dropped file with its reason

The readers feed a worker pool as they go (a few batches of jobs ahead of the workers), and each finished shard is joined with its records and appended to records.parquet as one row group, so
the stage holds one shard's images and records at a time: memory does not grow with the number of images. A
rerun skips every shard that is already finished for the same inputs and settings, so a killed ingest
resumes where it stopped. Facts a reader cannot know without opening the image (VinDr's header tags,
whether an RSNA point lies inside its slice) are settled from what the worker read, after the pixels.

A worker process that dies (the out-of-memory killer sends SIGKILL) stops the stage with WorkerDied,
exit code 1 and a message; the shards finished before it are kept, so the same command resumes.

Exit code: 0 when every input was used, 3 when the stage finished but some input was rejected (listed in
the report), 4 when a source is missing, found twice, misconfigured, failed while read or yielded no
image (nothing is written when it is known before the build starts), 1 or 2 for a failure or a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from build import artifacts, config
from build.imaging import ImageError, StandardImage, standardize_file
from build.errors import BuildError
from build.labels import Dropped, Labelled, LabelMap
from build.records import SourceRecord
from build.report import StageReport
from build.sources import EXPECTED, HEADER_FACTS, READERS, HeaderFacts, Release, SourceError, find
from spinebench import SOURCES

COMMAND = "ingest"
HELP = "read the raw releases into labelled records and standardized image shards"
EXIT_REJECTED = 3  # finished, but some input was rejected
EXIT_FAILED = 1
EXIT_SOURCE = 4  # a source asked for is missing, ambiguous, misconfigured, failed, or gave no image
FAR_BELOW = 0.5  # a source under this share of its release's size is loudly warned

SHARD_FORMAT = 3  # part of every shard key: shards written by an older layout are rebuilt, never misread
SHARD_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("png", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
    ]
)
# PNG is deflate-compressed already: zstd would spend CPU on it for next to no bytes (see the benchmark notes)
SHARD_COMPRESSION = {name: "none" if name == "png" else "zstd" for name in SHARD_SCHEMA.names}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=Path, required=True, help="folder holding buu/ csxa/ rsna/ vindr/")
    parser.add_argument("--work", type=Path, required=True, help="work folder for the build's artifacts")
    parser.add_argument("--profile", default="paper", help="build profile from configs/profiles.yaml")
    parser.add_argument("--workers", type=config.positive, default=os.cpu_count() or 1, help="decoding processes")
    add_sources(parser)
    add_shard_rows(parser)


def add_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES),
                        help="sources to read (default: all four, each required)")


def add_shard_rows(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard-rows", type=config.positive, help="images per image shard (default: the profile's)")


def profile_with(name: str, shard_rows: int | None) -> dict[str, Any]:
    """The named profile, with the shard size overridden when asked (it changes no output pixel)."""
    profile = config.profile(name)
    if shard_rows is not None:
        profile["imaging"] = {**profile["imaging"], "shard_rows": shard_rows}
    return profile


def main(args: argparse.Namespace) -> int:
    try:
        report = ingest(args.raw, args.work, profile_with(args.profile, args.shard_rows), args.workers,
                        args.sources)
    except SourceError as error:
        return source_failure(error)
    except WorkerDied as error:
        print(f"ingest failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(report.summary(f"{headline(report, args.sources)} in {args.work}"))
    return exit_code(report)


def source_failure(error: SourceError) -> int:
    print(f"ingest: nothing built: {error}", file=sys.stderr)
    return EXIT_SOURCE


def headline(report: StageReport, sources: Iterable[str] = SOURCES) -> str:
    """'N images (buu 12, csxa 0 FAILED, ...)': every source asked for, with its count."""
    images = report.counts.get("images", {})
    failed = report.counts.get("failed", {})
    parts = [f"{s} {images.get(s, 0)}{' FAILED' if s in failed else ''}" for s in sources]
    return f"{sum(images.values())} images ({', '.join(parts)})"


def exit_code(report: StageReport) -> int:
    if report.counts.get("failed"):
        return EXIT_SOURCE
    return EXIT_REJECTED if report.rejected else 0


@dataclass(frozen=True)
class Job:
    """What a worker needs to standardize one image (kept small: it is pickled to the pool)."""

    image_id: str
    source: str
    release: Release
    member: str  # the file, relative to the release root
    frame: int
    header_facts: HeaderFacts | None = None  # the reader's, for facts it leaves to the header

    @property
    def rel(self) -> str:
        """The file as reports name it (relative to RAW/<source>)."""
        return self.release.shown(self.member)

    @property
    def path(self) -> Path | None:
        """The file on disk; None for a zip member (the worker reads its bytes)."""
        return self.release.path(self.member)


def ingest(raw: Path, work: Path, profile: dict[str, Any], workers: int, sources: Iterable[str] = SOURCES
           ) -> StageReport:
    """Run the whole stage; returns the report it also writes to WORK/ingest_report.json.

    Everything is checked before the first write, every source in `sources` is found (SourceError when one
    is missing, found twice or does not fit its configuration); the new shards, records and report are
    written into staging and replace the previous ones only when the stage has completed (artifacts.Staging).
    """
    check_settings(raw, profile, workers)
    report = StageReport("ingest")  # the readers' and label map's, written by the pool's feeder thread
    releases = find_sources(raw, sources, report)
    with artifacts.locked(work):
        artifacts.remove_stale_temps(work)
        stage = artifacts.Staging(work, COMMAND, resume=True)  # a killed run's finished shards are reused
        stage.link_previous(artifacts.IMAGES_DIR)  # and so are the previous build's
        _ingest(releases, stage, profile, workers, report)
        stage.commit()
    return report


def check_settings(raw: Path, profile: dict[str, Any], workers: int) -> None:
    """Raise BuildError (a ConfigError for the configs) for anything that would make the stage fail later."""
    config.load_all()
    config.check_profile(profile)
    if workers < 1:
        raise BuildError(f"workers must be at least 1, not {workers}")
    if not raw.is_dir():
        raise BuildError(f"raw folder {raw} not found: give the folder holding {'/ '.join(SOURCES)}/")


def _ingest(releases: dict[str, Release], stage: artifacts.Staging, profile: dict[str, Any], workers: int,
            report: StageReport) -> None:
    images = StageReport("ingest")  # the shards' and records', written by this thread: the order is fixed
    labelled: deque[tuple[SourceRecord, Labelled]] = deque()  # read, not yet joined with their shard
    label_map = LabelMap.from_config(profile)

    def jobs() -> Iterator[Job]:
        for record, label in label_records(read_sources(releases, report), label_map, report, releases):
            labelled.append((record, label))
            yield Job(record.image_id, record.source, releases[record.source], record.path, record.frame,
                      HEADER_FACTS.get(record.source))

    seen_pixels: dict[str, str] = {}
    patients: dict[str, set[str]] = {}  # per source, the patients (studies) of the images written
    with artifacts.parquet_writer(stage / artifacts.RECORDS, RECORDS_SCHEMA) as records:
        for index, sidecar in enumerate(standardize_shards(jobs(), stage / artifacts.IMAGES_DIR,
                                                           profile["imaging"], workers)):
            jobs_in_shard = len(sidecar["images"]) + len(sidecar["rejected"])  # each job: an image or a reason
            in_shard = [labelled.popleft() for _ in range(jobs_in_shard)]
            rows = records_rows(in_shard, index, sidecar, seen_pixels, images, releases)
            records.write_table(pa.Table.from_pylist(rows, schema=RECORDS_SCHEMA))
            for row in rows:
                patients.setdefault(row["source"], set()).add(row["patient_id"])
    report.absorb(images)
    check_sizes(report.counts.get("images", {}), patients, releases, report)
    artifacts.write_json(stage / artifacts.SOURCES, sources_summary(releases, report))
    artifacts.write_json(stage / artifacts.PROFILE, {"profile": profile["name"]})
    report.finish()
    report.write(stage / "ingest_report.json")


def find_sources(raw: Path, sources: Iterable[str], report: StageReport) -> dict[str, Release]:
    """The release of every source asked for; one SourceError listing every source that is not usable."""
    releases: dict[str, Release] = {}
    problems: list[str] = []
    for source in sources:
        try:
            releases[source] = find(source, raw / source, report)
        except SourceError as error:
            problems.append(str(error))
    if problems:
        raise SourceError("\n".join(problems) + "\n(to build without a source, name the others with --sources)")
    return releases


def read_sources(releases: dict[str, Release], report: StageReport) -> Iterator[SourceRecord]:
    for source, release in releases.items():
        try:
            for record in READERS[source](release, report):
                report.count("read", source)
                yield record
        except Exception as error:  # a reader bug or an unreadable file fails the source, not the stage
            report.reject(source, release.shown(), f"reader failed ({type(error).__name__}: {error}); "
                                                   "records read before it are kept")
            report.count("failed", source)


def check_sizes(images: dict[str, int], patients: dict[str, set[str]], releases: dict[str, Release],
                report: StageReport) -> None:
    """A source with no image fails; one far below its release's size is a loud warning. `images` and
    `patients` are what was written, per source (RSNA's size is counted in studies)."""
    for source in releases:
        expected, unit = EXPECTED[source]
        found = len(patients.get(source, ())) if unit == "studies" else images.get(source, 0)
        report.count("expected", source, expected)
        report.count("found", source, found)
        if found == 0:
            report.reject(source, releases[source].shown(), "no image built from this source: the release is "
                                                             "empty or every file was rejected")
            report.count("failed", source)
        elif found < FAR_BELOW * expected:
            report.warn(source, releases[source].shown(), f"FAR BELOW THE RELEASE: {found:,} {unit} of the "
                        f"{expected:,} the release holds ({found / expected:.1%}): a partial download or a "
                        "wrong layout? (python -m build inventory --raw RAW)")


def sources_summary(releases: dict[str, Release], report: StageReport) -> dict[str, dict]:
    """What the card and the user need to know per source: where it was found and how complete it is."""
    return {
        source: {"found_at": release.shown(), "layout": release.layout, "unit": EXPECTED[source][1],
                 "found": report.counts["found"][source], "expected": report.counts["expected"][source],
                 "far_below": report.counts["found"][source] < FAR_BELOW * report.counts["expected"][source],
                 "failed": bool(report.counts.get("failed", {}).get(source))}
        for source, release in releases.items()
    }


def label_records(records: Iterable[SourceRecord], label_map: LabelMap, report: StageReport,
                  releases: dict[str, Release] | None = None) -> Iterator[tuple[SourceRecord, Labelled]]:
    """Apply the label map; drops and duplicate ids go to the report, not into the build. Files are named
    as reports name them (relative to RAW/<source>) when the releases are given."""
    seen: dict[str, str] = {}
    for record in records:
        shown = releases[record.source].shown(record.path) if releases else record.path
        if record.image_id in seen:
            report.reject(record.source, shown, f"image id {record.image_id} already used by {seen[record.image_id]}")
            continue
        seen[record.image_id] = shown
        outcome, warnings = label_map.apply(record)
        for warning in warnings:
            report.warn(record.source, shown, warning)
        if isinstance(outcome, Dropped):
            report.drop(record.source, shown, f"label map: {outcome.reason}")
            report.count("dropped", record.source)
            continue
        yield record, outcome


def shard_key(jobs: Sequence[Job], imaging: dict[str, Any]) -> str:
    """Identifies a shard's inputs and settings: a finished shard with another key is rebuilt."""
    text = json.dumps([SHARD_FORMAT, imaging, [(j.image_id, j.rel, j.frame) for j in jobs]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def shard_paths(folder: Path, index: int) -> tuple[Path, Path]:
    stem = folder / artifacts.shard_name(index)
    return stem.with_suffix(".parquet"), stem.with_suffix(".json")


def standardize_shards(jobs: Iterable[Job], folder: Path, imaging: dict[str, Any], workers: int
                       ) -> Iterator[dict]:
    """Standardize every job into shards of `shard_rows` images; yields each shard's sidecar, in shard order.

    Jobs are consumed lazily (see ordered_map: a few batches ahead of the workers): a shard's jobs go to
    the pool unless a finished shard with the same key is on disk, and results come back in order. Only
    one shard's images are ever held. A dead worker raises WorkerDied; the shards written before stay.
    """
    for path in folder.glob(".images-*.tmp"):  # from a killed run: never to be read as ours
        path.unlink()
    finished: dict[int, dict] = {}  # shards found done on disk, until yielded
    submitted: deque[tuple[int, str, tuple[Job, ...]]] = deque()  # appended before its jobs are handed out
    count = 0

    def pending() -> Iterator[Job]:  # runs in this thread: an exception here reaches the caller
        nonlocal count
        for index, chunk in enumerate(_chunks(jobs, imaging["shard_rows"])):
            count = index + 1
            key = shard_key(chunk, imaging)
            done = finished_sidecar(folder, index, key)
            if done is not None:
                finished[index] = done
                continue
            submitted.append((index, key, chunk))
            yield from chunk

    convert = partial(standardize_job, max_side=imaging["max_side"],
                      window=tuple(imaging["percentile_window"]))
    next_index = 0
    results = iter(tqdm(ordered_map(convert, pending(), workers), desc="standardize", unit="img", leave=False))
    for first in results:  # the first result of the next submitted shard
        index, key, chunk = submitted.popleft()
        images = [first, *islice(results, len(chunk) - 1)]
        yield from (finished.pop(i) for i in range(next_index, index))  # done shards before this one
        yield write_shard(folder, index, key, list(zip(chunk, images)))
        next_index = index + 1
    yield from (finished.pop(i) for i in range(next_index, count))
    remove_stale_shards(folder, count)


def _chunks(items: Iterable[Job], size: int) -> Iterator[tuple[Job, ...]]:
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def finished_sidecar(folder: Path, index: int, key: str) -> dict | None:
    """The sidecar of shard `index` if it is on disk, complete and made from the same inputs and settings."""
    parquet, sidecar = shard_paths(folder, index)
    if parquet.exists() and sidecar.exists():
        found = artifacts.read_json(sidecar)
        if found.get("key") == key:
            return found
    return None


class WorkerDied(RuntimeError):
    """A worker process died abruptly: the stage stops instead of waiting for results that never come."""


BATCH = 16  # jobs per task: fewer tasks cost the pool less bookkeeping than one job each
BATCHES_AHEAD = 4  # tasks queued per worker, so no worker waits while this thread writes a shard


def ordered_map(convert: Callable[[Job], Any], jobs: Iterable[Job], workers: int) -> Iterator[Any]:
    """convert(job) for every job, in order: in this process for one worker (debuggable, and the floor),
    else over a process pool that is handed BATCH jobs per task and only BATCHES_AHEAD tasks per worker
    ahead of the results read, so jobs are read from `jobs` as the workers need them.

    concurrent.futures notices a worker that dies (a multiprocessing.Pool replaces it and waits forever
    for its lost tasks): that becomes WorkerDied, with what to do next."""
    if workers <= 1:
        yield from map(convert, jobs)
        return
    batches = _chunks(jobs, BATCH)
    pool = ProcessPoolExecutor(workers)
    in_flight: deque[Future] = deque()

    def submit() -> None:
        if (batch := next(batches, None)) is not None:
            in_flight.append(pool.submit(_convert_batch, convert, batch))

    try:
        for _ in range(workers * BATCHES_AHEAD):
            submit()
        while in_flight:
            try:
                results = in_flight.popleft().result()
            except BrokenProcessPool as broken:
                raise WorkerDied("a worker process died abruptly (killed by a signal: the out-of-memory killer "
                                 "does this when memory runs out). The image shards finished before it are "
                                 "kept: run the same command again to resume, with fewer --workers if "
                                 "memory is short") from broken
            submit()
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _convert_batch(convert: Callable[[Job], Any], batch: tuple[Job, ...]) -> list[Any]:
    return [convert(job) for job in batch]


def standardize_job(job: Job, max_side: int, window: tuple[float, float]) -> StandardImage | str:
    """Worker body: the standard image, or the reason the file cannot be used."""
    try:
        pixels = job.release.pixels(job.member)
    except (OSError, zipfile.BadZipFile, EOFError) as error:  # a zip member that does not inflate
        return f"cannot read the file: {error}"
    try:
        image = standardize_file(pixels, frame=job.frame, max_side=max_side, percentile_window=window,
                                 header_facts=job.header_facts)
    except ImageError as error:
        return str(error)
    return image if image.contrast > 0 else "blank image: a single grey level"


SIDECAR_FIELDS = tuple(f.name for f in fields(StandardImage) if f.name != "png")


def write_shard(folder: Path, index: int, key: str, results: list[tuple[Job, StandardImage | str]]) -> dict:
    good = [(job, image) for job, image in results if isinstance(image, StandardImage)]
    table = pa.table(
        {
            "image_id": [job.image_id for job, _ in good],
            "png": [image.png for _, image in good],
            "width": [image.width for _, image in good],
            "height": [image.height for _, image in good],
            "sha256": [image.sha256 for _, image in good],
        },
        schema=SHARD_SCHEMA,
    )
    parquet, sidecar_path = shard_paths(folder, index)
    sidecar_path.unlink(missing_ok=True)  # never an old sidecar beside new pixels, should this run be killed
    artifacts.write_parquet(parquet, table, row_group_size=100, compression=SHARD_COMPRESSION)
    sidecar = {
        "key": key,
        "images": [{"image_id": job.image_id, **{name: getattr(image, name) for name in SIDECAR_FIELDS}}
                   for job, image in good],
        "rejected": [
            {"image_id": job.image_id, "source": job.source, "path": job.rel, "reason": reason}
            for job, reason in results
            if isinstance(reason, str)
        ],
    }
    artifacts.write_json(sidecar_path, sidecar, indent=None)  # machine-read; the indenting encoder is slow
    return sidecar


def remove_stale_shards(folder: Path, count: int) -> None:
    """Shards past the current count belong to an earlier, larger input: they may not be read as ours."""
    for path in folder.glob("images-*.*"):
        if int(path.stem.split("-")[1]) >= count:
            path.unlink()


FINDING = pa.struct([("label", pa.string()), ("level", pa.string()), ("severity", pa.string())])
RECORDS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("source", pa.string()),
        ("image_key", pa.string()),
        ("patient_id", pa.string()),
        ("modality", pa.string()),
        ("region", pa.string()),
        ("view", pa.string()),
        ("path", pa.string()),
        ("frame", pa.int32()),
        ("sex", pa.string()),
        ("age", pa.int32()),
        ("findings", pa.list_(FINDING)),
        ("disease", pa.string()),
        ("present", pa.list_(pa.string())),
        ("levels", pa.list_(pa.string())),
        ("severity", pa.string()),
        ("shard", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("source_width", pa.int32()),
        ("source_height", pa.int32()),
        ("sha256", pa.string()),
        ("clarity", pa.float64()),
        ("contrast", pa.float64()),
        ("header", pa.string()),  # whitelisted DICOM fields as JSON, "{}" for other formats
    ]
)


def check_points(record: SourceRecord, width: int, height: int, report: StageReport,
                 release: Release | None = None) -> None:
    """Warn about annotation points outside the stored image (x is the column); the finding is kept."""
    for point in record.points:
        if not (0 <= point.x <= width and 0 <= point.y <= height):
            shown = release.shown(point.file) if release else point.file
            report.warn(record.source, shown, f"point x={point.x}, y={point.y} lies outside the "
                                                   f"{width}x{height} slice {Path(record.path).name} (its "
                                                   "stored Columns x Rows); finding kept", row=point.row)


def records_rows(labelled: list[tuple[SourceRecord, Labelled]], shard: int, sidecar: dict,
                 seen_pixels: dict[str, str], report: StageReport,
                 releases: dict[str, Release] | None = None) -> list[dict]:
    """Join one shard's records, labels and figures into rows of the records table; count what came through.
    `seen_pixels` (pixel sha256 -> first image id) carries over from shard to shard."""
    for rejected in sidecar["rejected"]:
        report.reject(rejected["source"], rejected["path"], rejected["reason"])
    figures = {image["image_id"]: image for image in sidecar["images"]}
    rows: list[dict] = []
    for record, label in labelled:
        if record.image_id not in figures:
            continue
        image = figures[record.image_id]
        release = releases[record.source] if releases else None
        for warning in image["warnings"]:  # odd but usable files (build.imaging)
            report.warn(record.source, release.shown(record.path) if release else record.path, warning)
        record = replace(record, **image["facts"])
        check_points(record, image["source_width"], image["source_height"], report, release)
        if image["sha256"] in seen_pixels:
            shown = release.shown(record.path) if release else record.path
            report.warn(record.source, shown, f"same pixels as {seen_pixels[image['sha256']]} (kept: ids differ)")
        seen_pixels.setdefault(image["sha256"], record.image_id)
        report.count("images", record.source)
        report.count("disease", label.disease)
        report.count("source/disease", f"{record.source}/{label.disease}")
        rows.append(
            {
                "image_id": record.image_id,
                "source": record.source,
                "image_key": record.image_key,
                "patient_id": record.patient_id,
                "modality": record.modality,
                "region": record.region,
                "view": record.view,
                "path": record.path,
                "frame": record.frame,
                "sex": record.sex,
                "age": record.age,
                "findings": [{"label": f.label, "level": f.level, "severity": f.severity} for f in record.findings],
                "disease": label.disease,
                "present": list(label.present),
                "levels": list(label.levels),
                "severity": label.severity,
                "shard": shard,
                "width": image["width"],
                "height": image["height"],
                "source_width": image["source_width"],
                "source_height": image["source_height"],
                "sha256": image["sha256"],
                "clarity": image["clarity"],
                "contrast": image["contrast"],
                "header": json.dumps(image["header"], sort_keys=True),
            }
        )
    return rows
