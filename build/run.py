"""Run every stage: ingest -> items -> export, with work artifacts in OUT/work and the Hub folder in
OUT/spinebench. Each stage resumes from what is already finished. Ends by writing OUT/SHA256SUMS (one line
per output file, `sha256sum -c` format): two builds from the same inputs and seed have the same file.
Exit code as `ingest`: 0, 3 when some input was rejected (see OUT/work/ingest_report.json), 4 when a
source is missing, misconfigured, failed or gave no image (before anything is written when it is known
up front; otherwise after the build, which is then incomplete); 2 before anything is written for a bad
configuration, or when another build is writing OUT.

    python -m build run --raw RAW --out OUT [--profile P] [--embedder E] [--workers N] [--public] [--sources S..]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from build import artifacts, config, export, hubcheck, ingest, items
from build.checksums import write_checksums

COMMAND = "run"
HELP = "all stages from raw releases to the checked Hub folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=Path, required=True, help="folder holding buu/ csxa/ rsna/ vindr/")
    parser.add_argument("--out", type=Path, required=True, help="output folder (work/ and spinebench/ inside)")
    parser.add_argument("--profile", default="paper", help="build profile from configs/profiles.yaml")
    parser.add_argument("--embedder", default="fallback", help="'fallback' or a SigLIP2 Hub id / local path")
    parser.add_argument("--batch-size", type=config.positive,
                        help="images per embedding batch (default: 32 on CPU, 256 on a CUDA device)")
    parser.add_argument("--device", default="cpu", help="torch device for a SigLIP2 embedder")
    parser.add_argument("--workers", type=config.positive, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--review", type=Path, help=f"review decisions (default: WORK/{items.DECISIONS})")
    parser.add_argument("--public", action="store_true", help="pointer sources without pixels")
    ingest.add_sources(parser)
    ingest.add_shard_rows(parser)


def main(args: argparse.Namespace) -> int:
    work = args.out / "work"
    profile = ingest.profile_with(args.profile, args.shard_rows)
    ingest.check_settings(args.raw, profile, args.workers)  # every stage's settings, before the first write
    items.review_file(work, args.review)
    with artifacts.locked(args.out):  # a second `run` into OUT stops here, with a message
        artifacts.remove_stale_temps(args.out, recursive=False)  # OUT may hold RAW: never look there
        return _run(args, work, profile)


def _run(args: argparse.Namespace, work: Path, profile: dict) -> int:
    try:
        ingested = ingest.ingest(args.raw, work, profile, args.workers, args.sources)
    except ingest.SourceError as error:
        return ingest.source_failure(error)
    except ingest.WorkerDied as error:
        print(f"run failed in ingest: {error}", file=sys.stderr)
        return ingest.EXIT_FAILED
    print(ingested.summary(ingest.headline(ingested, args.sources)))
    report = items.make_items(work, profile, args.embedder, args.batch_size, args.device,
                              items.review_file(work, args.review))
    print(report.summary(f"{sum(report.counts.get('items', {}).values())} items"))
    folder = export.export(work, args.out, args.public)
    result = hubcheck.check(folder)
    print(result.summary())
    if not result.ok:
        return 1
    print(f"checksums of every output file: {write_checksums(args.out)}")
    preview(folder)
    return ingest.exit_code(ingested)


def preview(folder: Path, rows: int = 3) -> None:
    """Show the user how to load what was just built, with a few rows of it.

    The rows are read with pyarrow: the check above has already loaded every configuration through
    `load_dataset`, and a streaming iterator left unfinished can abort the interpreter at exit (a native
    thread of the Parquet reader still running).
    """
    import pyarrow.parquet as pq

    first = sorted((folder / "data" / "mini").glob("*.parquet"))[0]
    table = pq.ParquetFile(first).read_row_group(0, columns=["id", "question", "options", "answer", "source",
                                                             "modality", "view"])
    print(f"\nLoad it:  datasets.load_dataset({str(folder)!r}, 'mini', split='test')")
    for row in table.slice(0, rows).to_pylist():
        options = "  ".join(f"{letter}: {text}" for letter, text in zip("ABCDE", row["options"]))
        print(f"- [{row['id']}] {row['question']}\n    {options}\n    gold {row['answer']} ({row['source']}, "
              f"{row['modality']}, {row['view']})")
