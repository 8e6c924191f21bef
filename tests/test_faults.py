"""Mistakes and faults that must never cost the previous good build (issue 14, items 4 and 9): a bad
configuration or option stops a stage before its first write; a stage that fails part-way leaves the
previous results as they were; one build per folder; dead runs' temporary files are removed; outputs get
ordinary permissions; `standardize` never overwrites its input."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from build import artifacts, config, ingest, items
from build.__main__ import main as build_main
from build.checksums import checksum_lines
from build.errors import USAGE_EXIT, BuildError
from spinebench import QA, ROOT
from test_config import configs, edit  # noqa: F401 (a fixture)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def previous(built, tmp_path) -> Path:
    """A copy of the session's good work folder, standing for the build a faulty run must not damage."""
    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    return work


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "build", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


# --- validated before the first write -------------------------------------------------------------------


def test_a_misspelt_csxa_key_stops_ingest_before_it_touches_the_previous_build(configs, built, previous,
                                                                              capsys):
    """The red team's case: exit 3 with CSXA absent, after replacing 15 of 20 files of the good build."""
    edit(configs, "csxa", "  patient: [patient_id", "  patinet: [patient_id")
    before = snapshot(previous)
    assert build_main(["ingest", "--raw", str(built.raw), "--work", str(previous), "--workers", "1"]) == USAGE_EXIT
    assert "csxa.yaml: metadata.patinet: unknown key; allowed keys: file, sheet, key, patient" in capsys.readouterr().err
    assert snapshot(previous) == before


def test_a_missing_csxa_key_is_a_message_not_a_key_error(configs, built, tmp_path, capsys):
    edit(configs, "csxa", "\nclass_from: metadata ", "\n#")
    out = tmp_path / "out"
    assert build_main(["run", "--raw", str(built.raw), "--out", str(out)]) == USAGE_EXIT
    err = capsys.readouterr().err
    assert "csxa.yaml: class_from: missing key" in err and "KeyError" not in err
    assert not out.exists()


@pytest.mark.parametrize("how", ["profiles.yaml", "--shard-rows 0", "library"])
def test_shard_rows_zero_is_refused_before_any_write(configs, built, previous, capsys, how):
    """It once deleted the image shards, wrote empty tables and then crashed."""
    before = snapshot(previous)
    argv = ["ingest", "--raw", str(built.raw), "--work", str(previous), "--workers", "1"]
    if how == "profiles.yaml":
        edit(configs, "profiles", "shard_rows: 500", "shard_rows: 0")
        assert build_main(argv) == USAGE_EXIT
        assert "paper.imaging.shard_rows: Input should be greater than or equal to 1" in capsys.readouterr().err
    elif how == "--shard-rows 0":
        with pytest.raises(SystemExit) as exited:
            build_main([*argv, "--shard-rows", "0"])
        assert exited.value.code == USAGE_EXIT  # argparse's usage error
        assert "--shard-rows: must be at least 1, not 0" in capsys.readouterr().err
    else:
        profile = config.profile("paper")
        profile["imaging"] = {**profile["imaging"], "shard_rows": 0}
        with pytest.raises(config.ConfigError, match=r"imaging\.shard_rows: Input should be greater"):
            ingest.ingest(built.raw, previous, profile, workers=1)
    assert snapshot(previous) == before


@pytest.mark.parametrize("argv, message", [
    (["ingest", "--workers", "0"], "--workers: must be at least 1, not 0"),
    (["run", "--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
    (["items", "--batch-size", "-1"], "--batch-size: must be at least 1, not -1"),
    (["standardize", "x.dcm", "--max-side", "0"], "--max-side: must be at least 1, not 0"),
])
def test_an_impossible_option_is_a_usage_error(argv, message, tmp_path, capsys):
    where = {"ingest": ["--raw", "r", "--work", "w"], "run": ["--raw", "r", "--out", "o"],
             "items": ["--work", "w"], "standardize": ["--out", "o"]}[argv[0]]
    with pytest.raises(SystemExit) as exited:
        build_main([*argv, *where])
    assert exited.value.code == USAGE_EXIT and message in capsys.readouterr().err


def test_a_mistyped_review_file_stops_the_run_instead_of_dropping_every_decision(built, tmp_path, capsys):
    out = tmp_path / "out"
    assert build_main(["run", "--raw", str(built.raw), "--out", str(out), "--review", "decisons.jsonl"]) == 2
    assert "review decisions decisons.jsonl not found" in capsys.readouterr().err
    assert not out.exists()
    assert build_main(["items", "--work", str(out / "work")]) == 2
    assert "profile.json not found: run `python -m build ingest` first" in capsys.readouterr().err


def test_library_stages_refuse_what_they_cannot_finish(built, tmp_path):
    with pytest.raises(BuildError, match="workers must be at least 1"):
        ingest.ingest(built.raw, tmp_path / "w", config.profile("paper"), workers=0)
    with pytest.raises(BuildError, match=r"raw folder .*nowhere not found"):
        ingest.ingest(tmp_path / "nowhere", tmp_path / "w", config.profile("paper"), workers=1)
    with pytest.raises(BuildError, match=r"records\.parquet not found: run `python -m build ingest` first"):
        items.make_items(tmp_path / "w", config.profile("paper"), "fallback", 32, "cpu", None)
    assert not (tmp_path / "w").exists()


# --- a stage that fails part-way --------------------------------------------------------------------------


def test_an_ingest_that_fails_part_way_leaves_the_previous_build_and_the_rerun_resumes(built, previous,
                                                                                      monkeypatch):
    before = snapshot(previous)
    profile = config.profile("paper")
    profile["imaging"] = {**profile["imaging"], "shard_rows": 20}  # new shards: none can be reused
    write_shard, written = ingest.write_shard, []

    def failing(*args, **kwargs):
        if len(written) == 3:
            raise RuntimeError("planted failure after three shards")
        written.append(args[1])
        return write_shard(*args, **kwargs)

    monkeypatch.setattr(ingest, "write_shard", failing)
    with pytest.raises(RuntimeError, match="planted failure"):
        ingest.ingest(built.raw, previous, profile, workers=1)
    after = snapshot(previous)
    staged = sorted(name for name in after if name.startswith(".ingest.staging/"))
    unchanged = {name for name in before if name != artifacts.LOCK}  # the lock names its latest holder
    assert {name: data for name, data in after.items() if name not in staged and name in unchanged} == {
        name: before[name] for name in unchanged}
    assert set(after) - set(staged) == set(before)
    assert [name for name in staged if name.endswith(".json")] == [
        f".ingest.staging/images/images-{index:05d}.json" for index in range(3)]

    written.clear()
    monkeypatch.setattr(ingest, "write_shard", lambda *args, **kwargs: written.append(args[1])
                        or write_shard(*args, **kwargs))
    ingest.ingest(built.raw, previous, profile, workers=1)
    shards = sorted((previous / "images").glob("*.json"))
    assert written == list(range(3, len(shards)))  # the three staged shards were reused
    assert not (previous / ".ingest.staging").exists()
    old = pq.read_table(built.work / artifacts.RECORDS, columns=["image_id"]).column(0).to_pylist()
    new = pq.read_table(previous / artifacts.RECORDS, columns=["image_id", "shard"]).to_pylist()
    assert [row["image_id"] for row in new] == old and max(row["shard"] for row in new) == len(shards) - 1


def test_an_items_run_that_fails_part_way_leaves_the_previous_items(previous, monkeypatch):
    """Another profile makes other items; the run fails after writing qa.parquet: the old one stays."""
    before = snapshot(previous)
    write_json = artifacts.write_json

    def failing(path, *args, **kwargs):
        if path.name == items.ITEMS_SETTINGS:
            raise OSError("planted: disk full")
        return write_json(path, *args, **kwargs)

    monkeypatch.setattr(artifacts, "write_json", failing)
    with pytest.raises(OSError, match="planted"):
        items.make_items(previous, config.profile("clinical"), "fallback", 32, "cpu", None)
    assert (previous / ".items.staging" / QA).exists()  # the new items were written, into staging
    for name in (QA, items.ITEMS_SETTINGS, "items_report.json"):
        assert (previous / name).read_bytes() == before[name], name
    monkeypatch.setattr(artifacts, "write_json", write_json)
    items.make_items(previous, config.profile("clinical"), "fallback", 32, "cpu", None)
    assert (previous / QA).read_bytes() != before[QA] and not (previous / ".items.staging").exists()


@pytest.mark.parametrize("killed_after", ["records moved", "old images renamed away"])
def test_a_commit_killed_half_way_is_finished_by_the_next_run(tmp_path, killed_after):
    work = tmp_path / "work"
    staging = work / ".ingest.staging"
    (staging / "images").mkdir(parents=True)
    (staging / "images" / "images-00000.parquet").write_text("new shard")
    (staging / Path(artifacts.Staging.COMPLETE)).touch()
    (work / "records.parquet").write_text("new records")  # moved before the kill
    if killed_after == "old images renamed away":
        (work / ".images.old").mkdir()
        (work / ".images.old" / "images-00000.parquet").write_text("old shard")
    else:
        (work / "images").mkdir()
        (work / "images" / "images-00000.parquet").write_text("old shard")
    artifacts.Staging(work, "ingest", resume=True)
    assert snapshot(work) == {"images/images-00000.parquet": b"new shard", "records.parquet": b"new records"}
    assert list(staging.iterdir()) == []


# --- one build per folder ----------------------------------------------------------------------------------


def test_a_second_run_into_the_same_out_folder_stops_at_once(built, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "build", "run", "--raw", str(built.raw), "--out", str(out),
                              "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while f"pid {first.pid}," not in ((out / artifacts.LOCK).read_text() if (out / artifacts.LOCK).exists()
                                          else ""):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        second = cli("run", "--raw", str(built.raw), "--out", str(out))
        assert first.poll() is None, "the first run ended before the second tried: make the input larger"
        assert second.returncode == USAGE_EXIT, second.stderr[-2000:]
        assert f"is being written by another build (pid {first.pid}," in second.stderr
        assert "Traceback" not in second.stderr
        assert first.wait(timeout=600) == 3, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert (out / "SHA256SUMS").read_text().splitlines(keepends=True) == checksum_lines(out)
    assert checksum_lines(out) == checksum_lines(built.hub.parent)  # as if it had run alone


def test_a_lock_is_released_when_its_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from build import artifacts\nwith artifacts.locked(Path(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(600)", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(artifacts.FolderInUse, match=rf"pid {holder.pid},"):
        with artifacts.locked(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with artifacts.locked(tmp_path), artifacts.locked(tmp_path):  # and this process may nest it
        pass


# --- what killed runs leave behind --------------------------------------------------------------------------


def test_temporary_files_of_dead_runs_are_removed_and_live_ones_kept(previous):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stale = [f".records.parquet.{dead.pid}.k2j3h4x1.tmp", ".records.parquet.k2j3h4x1.tmp",
                 f"images/.images-00000.parquet.{dead.pid}.abcdefgh.tmp",
                 f"review/.decisions.jsonl.{dead.pid}.qwertyui.tmp"]
        kept = f"review/.decisions.jsonl.{live.pid}.asdfghjk.tmp"  # a review server writing right now
        for name in [*stale, kept]:
            (previous / name).parent.mkdir(exist_ok=True)
            (previous / name).write_text("partial")
        items.make_items(previous, config.profile("paper"), "fallback", 32, "cpu", None)
        assert [name for name in stale if (previous / name).exists()] == []
        assert (previous / kept).exists()
    finally:
        live.kill()
        live.wait()


def umask_022() -> None:
    os.umask(0o022)


def test_a_killed_export_leaves_its_scratch_beside_out_and_the_next_one_removes_it(built, tmp_path):
    """The scratch lived in /tmp and stayed there; the export and its files were 0600/0700."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "build", "export", "--work", str(built.work), "--out", str(out)]
    process = subprocess.Popen(args, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=umask_022)
    deadline = time.monotonic() + 300
    while not any(out.glob(".spinebench.scratch.*/*/*")):
        assert process.poll() is None and time.monotonic() < deadline, "never saw the scratch"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(out.glob(".spinebench.scratch.*"))
    assert subprocess.run(args, cwd=ROOT, capture_output=True, preexec_fn=umask_022).returncode == 0
    assert not list(out.glob(".spinebench.*"))
    folder = out / "spinebench"
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o755 if (out / name).is_dir() else 0o644)}
    assert len(modes) > 10 and not wrong, wrong


# --- standardize -------------------------------------------------------------------------------------------


def test_standardize_never_overwrites_its_own_input(tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    picture, other = folder / "spine.png", folder / "other.jpg"
    Image.linear_gradient("L").save(picture)
    Image.linear_gradient("L").rotate(90).save(other)
    (folder / "other.png").symlink_to(picture)  # other.jpg's PNG would land on spine.png through the link
    before = snapshot(folder)
    assert build_main(["standardize", str(picture), str(other), "--out", str(folder)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"refused {picture}: its PNG {picture} would overwrite the input file {picture}: choose another --out",
        f"refused {other}: its PNG {folder / 'other.png'} would overwrite the input file {picture}: "
        "choose another --out",
        "standardize: 0 written, 2 refused"]
    assert snapshot(folder) == before


def test_standardize_escapes_control_characters_in_the_names_it_prints(tmp_path, capsys):
    bad = tmp_path / "a\nwritten forged.png 1x1"
    bad.write_bytes(b"not an image at all, long enough to be read" * 4)
    assert build_main(["standardize", str(bad), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("written")]
    assert "a\\nwritten forged.png 1x1" in out
