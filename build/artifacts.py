"""Where each stage's artifacts live in the work folder, and how they are written.

Every write goes to a temporary file in the same folder and is renamed into place, so a killed build never
leaves a half-written artifact that a rerun would take as finished. A stage writes its results into a
staging folder beside them and moves them over the previous ones only when it has completed (`Staging`),
so a failed or misconfigured run leaves the previous good build as it was. One build at a time may write
a folder (`locked`); temporary files whose writer has died are removed (`remove_stale_temps`). Files are
created with the ordinary permissions (0644 and 0755 under the usual umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from build.errors import BuildError

IMAGES_DIR = "images"  # image shards: images-00000.parquet (+ .json sidecar with figures and rejects)
RECORDS = "records.parquet"  # one row per standardized image: provenance, labels, figures
PROFILE = "profile.json"  # the profile the work folder was ingested with
SOURCES = "sources.json"  # per source: where its release was found, its count against the release's size
LOCK = ".lock"  # held (flock) by the build writing the folder; the kernel releases it when that build dies
TEMP = re.compile(r"^\..+\.(\d+)\.\w+\.tmp$")  # atomic_path's names: .<name>.<pid of the writer>.<random>.tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would have made
DIR_MODE = 0o777 & ~_umask()


def shard_name(index: int) -> str:
    """Image shard `index` is IMAGES_DIR/<name>.parquet (+ .json); per-shard caches reuse the name."""
    return f"images-{index:05d}"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
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


# --- one writer per folder, and what dead writers left -------------------------------------------------

class FolderInUse(BuildError):
    """Another build holds the folder's lock."""


_held: dict[Path, int] = {}  # folders this process has locked -> nesting depth (`run` locks, then its stages)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold FOLDER/.lock for the block, or raise FolderInUse at once if another build holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with open(folder / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a build"
            raise FolderInUse(f"{folder} is being written by another build ({holder}); wait for it to "
                              "finish, or give this one another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files in `folder` (and below, if `recursive`) whose writer is no longer running.

    A live writer's file (another process appending a review decision, say) is left alone; a name without
    a writer's pid is from a build older than that rule, and is stale. Returns what was removed.
    """
    removed = []
    for path in (folder.rglob if recursive else folder.glob)(".*.tmp"):
        match = TEMP.match(path.name)
        if path.is_file() and not (match and _alive(int(match[1]))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# --- staging: a stage's results replace the previous ones only when complete ------------------------------

class Staging:
    """WORK/.<stage>.staging: where a stage writes its results, moved over WORK's when `commit` is called.

    `resume`: keep what a killed run of the stage left there (ingest's finished shards); otherwise it is
    cleared. A run killed while committing left the COMPLETE marker: the next one finishes that commit
    first, so the work folder never stays half old, half new.
    """

    COMPLETE = ".complete"

    def __init__(self, work: Path, stage: str, resume: bool = False) -> None:
        self.work = work
        self.folder = work / f".{stage}.staging"
        if (self.folder / self.COMPLETE).exists():
            self.commit()
        elif self.folder.exists() and not resume:
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.folder / name

    def link_previous(self, name: str) -> None:
        """Seed staging folder `name` with hard links to WORK/<name>'s files (copies where links fail), so a
        stage that reuses finished files finds them; a file a killed run already staged keeps its place."""
        previous, staged = self.work / name, self.folder / name
        if not previous.is_dir():
            return
        staged.mkdir(parents=True, exist_ok=True)
        taken = {path.name.split(".")[0] for path in staged.iterdir()}  # a stem with any staged file
        for path in sorted(previous.iterdir()):
            if path.is_file() and path.name.split(".")[0] not in taken and not path.name.startswith("."):
                try:
                    os.link(path, staged / path.name)
                except OSError:
                    shutil.copy2(path, staged / path.name)

    def commit(self) -> None:
        """Move every staged entry over its counterpart in WORK, then remove the staging folder."""
        (self.folder / self.COMPLETE).touch()
        for entry in sorted(self.folder.iterdir()):
            if entry.name == self.COMPLETE:
                continue
            target = self.work / entry.name
            if entry.is_dir():
                old = self.work / f".{entry.name}.old"
                if old.exists():
                    shutil.rmtree(old)
                if target.exists():
                    target.rename(old)
                entry.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, target)
        for old in self.work.glob(".*.old"):  # a kill between the rename and the removal above
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.folder)
