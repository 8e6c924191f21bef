"""A decoding worker killed mid-ingest (as the out-of-memory killer does, with SIGKILL) ends the stage with a
clear error and a non-zero exit instead of a hang, and the same command then resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from build import artifacts, ingest
from spinebench import ROOT

VICTIM = 37  # the item whose worker kills itself


def square(value: int) -> int:
    return value * value


def square_or_die(value: int) -> int:
    if value == VICTIM:
        os.kill(os.getpid(), signal.SIGKILL)
    return value * value


@pytest.fixture
def deadline():
    """Fail the test instead of hanging it: the bug this file plants was a hang."""
    def expired(*_):
        raise TimeoutError("still waiting after 120 s: a dead worker hangs the pool")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ordered_map_gives_every_result_in_order(workers, deadline):
    items = list(range(200))
    assert list(ingest.ordered_map(square, iter(items), workers)) == [i * i for i in items]


def test_ordered_map_reads_its_input_only_a_few_batches_ahead(deadline):
    read = []

    def items():
        for i in range(10_000):
            read.append(i)
            yield i

    results = ingest.ordered_map(square, items(), 2)
    assert next(results) == 0
    ahead = 2 * ingest.BATCHES_AHEAD * ingest.BATCH + ingest.BATCH
    assert len(read) <= ahead  # streamed, not read whole
    results.close()


def test_a_killed_worker_raises_instead_of_hanging(deadline):
    with pytest.raises(ingest.WorkerDied, match=r"^a worker process died abruptly .* run the same command "
                                                r"again to resume"):
        list(ingest.ordered_map(square_or_die, iter(range(200)), 2))


def worker_pids(pid: int) -> list[int]:
    """The pool workers of `pid`: its children forked with its own command line."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    pids = []
    for child in map(int, children):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes() == own:
                pids.append(child)
        except FileNotFoundError:
            continue
    return pids


def test_ingest_stops_with_a_message_when_a_worker_is_killed_and_then_resumes(built, tmp_path):
    work = tmp_path / "work"
    command = [sys.executable, "-m", "build", "ingest", "--raw", str(built.raw), "--work", str(work),
               "--workers", "2", "--shard-rows", "10"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        started = time.monotonic()
        while not (work / "images" / artifacts.shard_name(2)).with_suffix(".json").exists():
            assert process.poll() is None, "finished before a worker could be killed: make the input larger"
            assert time.monotonic() - started < 180, "no shard was finished"
            time.sleep(0.02)
        victims = worker_pids(process.pid)
        assert victims, "no pool worker found"
        os.kill(victims[0], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)  # the old pool waited here forever
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, (stdout, stderr)
    assert "ingest failed: a worker process died abruptly" in stderr and "Traceback" not in stderr, stderr
    assert not (work / "records.parquet").exists()
    kept = {path.name: path.stat().st_mtime_ns for path in (work / "images").glob("images-*.json")}
    assert len(kept) >= 3

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 3, rerun.stderr  # the replicas plant rejected files
    for name, mtime in kept.items():  # resumed: the shards finished before the kill were reused
        assert (work / "images" / name).stat().st_mtime_ns == mtime, name
    columns = ["image_id", "sha256"]
    resumed = pq.read_table(work / artifacts.RECORDS, columns=columns).to_pylist()
    reference = pq.read_table(built.work / artifacts.RECORDS, columns=columns).to_pylist()
    assert resumed == reference
