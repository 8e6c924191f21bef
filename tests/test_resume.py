"""A build killed at any point resumes and ends byte-identical to an uninterrupted one; builds are
deterministic down to SHA256SUMS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from build.checksums import checksum_lines, output_files
from spinebench import ROOT


def start(*args: str) -> subprocess.Popen:
    """`python -m build ...` in its own process group, so a kill takes its worker processes too."""
    return subprocess.Popen([sys.executable, "-m", "build", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "finished before it could be killed: make the input larger"
        assert time.monotonic() < deadline, "the condition never came"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def same_files(a: Path, b: Path) -> None:
    left = {p.relative_to(a): p for p in output_files(a)}
    right = {p.relative_to(b): p for p in output_files(b)}
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].read_bytes() == right[name].read_bytes(), name


def test_ingest_killed_mid_way_resumes_to_identical_output(built, tmp_path):
    args = ["ingest", "--raw", str(built.raw), "--workers", "2", "--shard-rows", "10"]
    reference = tmp_path / "reference"
    assert subprocess.run([sys.executable, "-m", "build", *args, "--work", str(reference)], cwd=ROOT,
                          capture_output=True).returncode == 3  # the replicas plant rejected files
    work = tmp_path / "work"
    process = start(*args, "--work", str(work))
    kill_when(process, lambda: (work / ".ingest.staging" / "images" / "images-00004.json").exists())
    shards = len(list((work / ".ingest.staging" / "images").glob("*.json")))
    assert not (work / "records.parquet").exists() and shards < len(list((reference / "images").glob("*.json")))
    assert subprocess.run([sys.executable, "-m", "build", *args, "--work", str(work)], cwd=ROOT,
                          capture_output=True).returncode == 3
    same_files(work, reference)
    assert not list((work / "images").glob(".*"))  # no temporary file left behind


def test_export_killed_mid_way_resumes_to_identical_output(built, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    out = tmp_path / "out"
    process = start("export", "--work", str(work), "--out", str(out))
    kill_when(process, lambda: any(out.glob(".spinebench.*/data/diagnosis/*.parquet")))
    assert not (out / "spinebench").exists()  # nothing half-exported is ever at the published path
    assert subprocess.run([sys.executable, "-m", "build", "export", "--work", str(work), "--out", str(out)],
                          cwd=ROOT, capture_output=True).returncode == 0
    same_files(out / "spinebench", built.hub)
    assert not list(out.glob(".spinebench.*"))


def test_a_whole_build_is_deterministic_down_to_its_checksums(built, tmp_path):
    result = subprocess.run([sys.executable, "-m", "build", "run", "--raw", str(built.raw), "--out",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr[-2000:]
    written = (tmp_path / "SHA256SUMS").read_text().splitlines(keepends=True)
    assert written == checksum_lines(tmp_path)
    assert any(line.endswith("  spinebench/README.md\n") for line in written)
    assert any(line.endswith("  work/qa.parquet\n") for line in written)
    assert written == checksum_lines(built.hub.parent)  # the session build: same inputs, same files
