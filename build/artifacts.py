"""Where each stage's artifacts live in the work folder, and how they are written.

Every write goes to a temporary file in the same folder and is renamed into place, so a killed build never
leaves a half-written artifact that a rerun would take as finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

IMAGES_DIR = "images"  # image shards: images-00000.parquet (+ .json sidecar with figures and rejects)
RECORDS = "records.parquet"  # one row per standardized image: provenance, labels, figures
PROFILE = "profile.json"  # the profile the work folder was ingested with
SOURCES = "sources.json"  # per source: where its release was found, its count against the release's size


def shard_name(index: int) -> str:
    """Image shard `index` is IMAGES_DIR/<name>.parquet (+ .json); per-shard caches reuse the name."""
    return f"images-{index:05d}"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def parquet_writer(path: Path, schema: pa.Schema, **options: Any) -> Iterator[pq.ParquetWriter]:
    """A Parquet file written a table at a time (each one a row group), renamed into place when complete."""
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **{"compression": "zstd", **options}) as writer:
        yield writer


def write_parquet(path: Path, table: pa.Table, row_group_size: int | None = None,
                  compression: str | dict[str, str] = "zstd") -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression=compression)
