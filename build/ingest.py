"""Read the raw releases, label every image, and standardize the pixels into Parquet image shards.

    python -m build ingest --raw RAW --work WORK [--profile paper] [--workers N]

RAW holds one folder per source (buu/ csxa/ rsna/ vindr/), each the release as downloaded; a missing one is
skipped with a warning. WORK receives:
  images/images-NNNNN.parquet   image shards: image_id, png (8-bit grayscale, lossless), width, height, sha256
  images/images-NNNNN.json      the shard's figures and rejected files; written last, so it marks the shard done
  records.parquet               one row per standardized image: provenance, raw findings, disease, levels, figures
  ingest_report.json            counts per source and disease, every rejected or dropped file with its reason

Pixels stream through a worker pool shard by shard, so memory does not grow with the number of images; a
rerun skips every shard that is already finished for the same inputs and settings, so a killed ingest
resumes where it stopped.

Exit code: 0 when every input was used, 3 when the stage finished but some input was rejected (listed in
the report), 1 or 2 for a failure or a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from itertools import groupby
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from build import artifacts, config
from build.imaging import ImageError, StandardImage, standardize_file
from build.labels import Dropped, Labelled, LabelMap
from build.records import SourceRecord
from build.report import StageReport
from build.sources import READERS
from spinebench import SOURCES

COMMAND = "ingest"
HELP = "read the raw releases into labelled records and standardized image shards"
EXIT_REJECTED = 3  # finished, but some input was rejected

SHARD_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("png", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
    ]
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=Path, required=True, help="folder holding buu/ csxa/ rsna/ vindr/")
    parser.add_argument("--work", type=Path, required=True, help="work folder for the build's artifacts")
    parser.add_argument("--profile", default="paper", help="build profile from configs/profiles.yaml")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES), help="sources to read")
    add_shard_rows(parser)


def add_shard_rows(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard-rows", type=int, help="images per image shard (default: the profile's)")


def profile_with(name: str, shard_rows: int | None) -> dict[str, Any]:
    """The named profile, with the shard size overridden when asked (it changes no output pixel)."""
    profile = config.profile(name)
    if shard_rows:
        profile["imaging"] = {**profile["imaging"], "shard_rows": shard_rows}
    return profile


def main(args: argparse.Namespace) -> int:
    report = ingest(args.raw, args.work, profile_with(args.profile, args.shard_rows), args.workers, args.sources)
    print(report.summary(f"{sum(report.counts.get('images', {}).values())} images in {args.work}"))
    return exit_code(report)


def exit_code(report: StageReport) -> int:
    return EXIT_REJECTED if report.rejected else 0


@dataclass(frozen=True)
class Job:
    """What a worker needs to standardize one image (kept small: it is pickled to the pool)."""

    image_id: str
    source: str
    path: Path
    rel: str
    frame: int


def ingest(raw: Path, work: Path, profile: dict[str, Any], workers: int, sources: Iterable[str] = SOURCES
           ) -> StageReport:
    """Run the whole stage; returns the report it also writes to WORK/ingest_report.json."""
    report = StageReport("ingest")
    labelled = label_records(read_sources(raw, sources, report), LabelMap.from_config(profile), report)
    jobs = [Job(r.image_id, r.source, raw / r.source / r.path, r.path, r.frame) for r, _ in labelled]
    shards = standardize_shards(jobs, work / artifacts.IMAGES_DIR, profile["imaging"], workers)
    rows = records_rows(labelled, shards, report)
    artifacts.write_parquet(work / artifacts.RECORDS, pa.Table.from_pylist(rows, schema=RECORDS_SCHEMA))
    artifacts.write_json(work / artifacts.PROFILE, {"profile": profile["name"]})
    report.finish()
    report.write(work / "ingest_report.json")
    return report


def read_sources(raw: Path, sources: Iterable[str], report: StageReport) -> Iterator[SourceRecord]:
    for source in sources:
        folder = raw / source
        if not folder.is_dir():
            report.warn(source, str(folder), "source folder not found: source skipped")
            continue
        try:
            for record in READERS[source](folder, report):
                report.count("read", source)
                yield record
        except Exception as error:  # a reader bug or an unreadable folder costs that source's rest, not the build
            report.reject(source, ".", f"reader failed ({type(error).__name__}: {error}); "
                                       "records read before it are kept")


def label_records(records: Iterable[SourceRecord], label_map: LabelMap, report: StageReport
                  ) -> list[tuple[SourceRecord, Labelled]]:
    """Apply the label map; drops and duplicate ids go to the report, not into the build."""
    kept: list[tuple[SourceRecord, Labelled]] = []
    seen: dict[str, str] = {}
    for record in records:
        if record.image_id in seen:
            report.reject(record.source, record.path, f"image id {record.image_id} already used by {seen[record.image_id]}")
            continue
        seen[record.image_id] = record.path
        outcome, warnings = label_map.apply(record)
        for warning in warnings:
            report.warn(record.source, record.path, warning)
        if isinstance(outcome, Dropped):
            report.drop(record.source, record.path, f"label map: {outcome.reason}")
            report.count("dropped", record.source)
            continue
        kept.append((record, outcome))
    return kept


def shard_key(jobs: list[Job], imaging: dict[str, Any]) -> str:
    """Identifies a shard's inputs and settings: a finished shard with another key is rebuilt."""
    text = json.dumps([imaging, [(j.image_id, j.rel, j.frame) for j in jobs]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def shard_paths(folder: Path, index: int) -> tuple[Path, Path]:
    stem = folder / f"images-{index:05d}"
    return stem.with_suffix(".parquet"), stem.with_suffix(".json")


def standardize_shards(jobs: list[Job], folder: Path, imaging: dict[str, Any], workers: int) -> list[dict]:
    """Standardize every job into shards of `shard_rows` images; returns each shard's sidecar."""
    size = imaging["shard_rows"]
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    keys = [shard_key(chunk, imaging) for chunk in chunks]
    sidecars: dict[int, dict] = {}
    for index, key in enumerate(keys):
        parquet, sidecar = shard_paths(folder, index)
        if parquet.exists() and sidecar.exists() and artifacts.read_json(sidecar).get("key") == key:
            sidecars[index] = artifacts.read_json(sidecar)
    remove_stale_shards(folder, len(chunks))

    pending = [(index, job) for index, chunk in enumerate(chunks) if index not in sidecars for job in chunk]
    convert = partial(standardize_job, max_side=imaging["max_side"],
                      window=tuple(imaging["percentile_window"]))
    with _mapper(workers) as imap:
        results = imap(convert, [job for _, job in pending])
        progress = tqdm(results, total=len(pending), desc="standardize", unit="img", leave=False,
                        disable=not pending)
        labelled = zip((index for index, _ in pending), [job for _, job in pending], progress)
        for index, group in groupby(labelled, key=lambda item: item[0]):
            sidecars[index] = write_shard(folder, index, keys[index], [(job, res) for _, job, res in group])
    return [sidecars[i] for i in range(len(chunks))]


class _mapper:
    """An ordered map over a process pool, or in-process for one worker (debuggable, and the floor)."""

    def __init__(self, workers: int) -> None:
        self.pool = Pool(workers) if workers > 1 else None

    def __enter__(self):
        if self.pool is None:
            return map
        return partial(self.pool.imap, chunksize=16)  # 4 cost the pool's bookkeeping thread 3x the CPU

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()


def standardize_job(job: Job, max_side: int, window: tuple[float, float]) -> StandardImage | str:
    """Worker body: the standard image, or the reason the file cannot be used."""
    try:
        image = standardize_file(job.path, frame=job.frame, max_side=max_side, percentile_window=window)
    except ImageError as error:
        return str(error)
    return image if image.contrast > 0 else "blank image: a single grey level"


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
    artifacts.write_parquet(parquet, table, row_group_size=100)
    sidecar = {
        "key": key,
        "images": [
            {"image_id": job.image_id, **{k: v for k, v in asdict(image).items() if k != "png"}}
            for job, image in good
        ],
        "rejected": [
            {"image_id": job.image_id, "source": job.source, "path": job.rel, "reason": reason}
            for job, reason in results
            if isinstance(reason, str)
        ],
    }
    artifacts.write_json(sidecar_path, sidecar)
    return sidecar


def remove_stale_shards(folder: Path, count: int) -> None:
    """Shards past the current count belong to an earlier, larger input, and temporary files to a killed run:
    neither may be read as ours."""
    for path in folder.glob("images-*.*"):
        if int(path.stem.split("-")[1]) >= count:
            path.unlink()
    for path in folder.glob(".images-*.tmp"):
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


def records_rows(labelled: list[tuple[SourceRecord, Labelled]], sidecars: list[dict], report: StageReport
                 ) -> list[dict]:
    """Join records, labels and the shards' figures into the records table; count what came through."""
    figures: dict[str, tuple[int, dict]] = {}
    for index, sidecar in enumerate(sidecars):
        for rejected in sidecar["rejected"]:
            report.reject(rejected["source"], rejected["path"], rejected["reason"])
        for image in sidecar["images"]:
            figures[image["image_id"]] = (index, image)
    rows: list[dict] = []
    first_with_pixels: dict[str, str] = {}
    for record, label in labelled:
        if record.image_id not in figures:
            continue
        shard, image = figures[record.image_id]
        if image["sha256"] in first_with_pixels:
            report.warn(record.source, record.path,
                        f"same pixels as {first_with_pixels[image['sha256']]} (kept: ids differ)")
        first_with_pixels.setdefault(image["sha256"], record.image_id)
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
                "findings": [asdict(f) for f in record.findings],
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
