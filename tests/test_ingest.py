"""Ingest on the replicas, checked against what the replica generator says it planted (its manifest),
never against the readers' own output."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from build import artifacts, config, ingest
from spinebench import LEVELS

RLE, J2K = "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"


def expected_disease(image: dict) -> str:
    """The SDD label the paper profile gives a planted image: lesions before Healthy, then the lesion with the
    most boxes (labels.multi_lesion: most_boxes; VinDr's box counts are in the manifest), ties by priority."""
    planted = image["diseases"]
    lesions = [d for d in planted if d != "Healthy"] or planted
    priority = config.load("labels")["primary_priority"]
    ranked = sorted(lesions, key=lambda d: priority.index(d) if d in priority else len(priority))
    mapping = config.load("labels")["sources"].get(image["source"], {})
    boxes = Counter()
    for raw, n in image.get("boxes", {}).items():
        boxes[mapping.get(raw)] += n
    return max(ranked, key=lambda d: (boxes[d], -ranked.index(d)))


@pytest.fixture(scope="module")
def records(built):
    return {row["image_id"]: row for row in pq.read_table(built.work / artifacts.RECORDS).to_pylist()}


@pytest.fixture(scope="module")
def report(built):
    return json.loads((built.work / "ingest_report.json").read_text())


def planted_id(image: dict) -> str:
    from build.records import slug

    return f"{image['source']}-{slug(image['image_key'])}"


def test_every_planted_image_arrives_with_its_disease_and_levels(built, records):
    planted = {planted_id(image): image for image in built.manifest["images"]}
    assert set(records) == set(planted)
    for image_id, image in planted.items():
        row = records[image_id]
        disease = expected_disease(image)
        assert row["disease"] == disease, image_id
        levels = {entry["level"] for entry in image["levels"].get(disease, [])}
        assert row["levels"] == [level for level in LEVELS if level in levels], image_id
        facts = ("modality", "region", "view", "patient_id", "sex", "age")  # VinDr's from the worker's parse
        assert [row[name] for name in facts] == [image[name] for name in facts], image_id


def test_counts_per_source_and_disease_match_the_manifest(built, report):
    by_source = built.manifest["counts"]["images_by_source"]
    assert report["counts"]["images"] == by_source
    expected = Counter(expected_disease(image) for image in built.manifest["images"])
    assert report["counts"]["disease"] == dict(expected)


def test_every_planted_edge_case_is_in_the_report_with_a_reason(built, report):
    kinds = {"reject": "rejected", "warn": "warnings", "drop": "dropped"}
    for case in built.manifest["edge_cases"]:
        if case["expect"] == "accept":
            continue
        issues = [i for i in report[kinds[case["expect"]]] if i["source"] == case["source"]]
        matching = [i for i in issues if i["path"] == case["path"]]
        assert matching, f"{case['kind']} {case['path']} not in report[{kinds[case['expect']]}]"
        assert all(len(i["reason"]) > 10 for i in matching)


def test_accepted_edge_cases_keep_their_images(built, records):
    paths = [row["path"] for row in records.values()]
    for case in built.manifest["edge_cases"]:
        if case["expect"] != "accept":
            continue
        if case["image_key"]:  # a row-level case: that image arrives
            assert planted_id(case) in records, case
        else:  # a layout case: images under that folder arrive
            assert any(p.startswith(case["path"]) for p in paths), case


def test_monochrome1_comes_out_with_bone_bright(built, records):
    """The phantom's spine sits in the middle of a darker body: the middle must be the brighter part."""
    checked = Counter()
    for image in built.manifest["images"]:
        if image["source"] != "vindr":
            continue
        row = records[planted_id(image)]
        table = pq.read_table(built.work / "images" / f"images-{row['shard']:05d}.parquet",
                              filters=[("image_id", "=", row["image_id"])])
        pixels = np.asarray(Image.open(io.BytesIO(table.column("png")[0].as_py())), dtype=float)
        h, w = pixels.shape
        middle = pixels[h // 4: 3 * h // 4, 2 * w // 5: 3 * w // 5].mean()
        edges = np.concatenate([pixels[:, : w // 10].ravel(), pixels[:, -w // 10:].ravel()]).mean()
        assert middle > edges + 20, (image["photometric"], image["path"])
        checked[image["photometric"]] += 1
    assert checked["MONOCHROME1"] >= 3 and checked["MONOCHROME2"] >= 3


def test_compressed_dicoms_decode(built, records):
    syntaxes = Counter(image.get("transfer_syntax") for image in built.manifest["images"]
                       if planted_id(image) in records)
    assert syntaxes[RLE] >= 1 and syntaxes[J2K] >= 1


def test_no_phi_marker_reaches_any_output_byte(built):
    markers = [m.encode() for m in built.manifest["phi_markers"]]
    assert markers
    for path in [*built.work.rglob("*"), *built.hub.rglob("*")]:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".parquet":  # pages are compressed: search the decoded values
            data = json.dumps(pq.read_table(path).drop_columns(
                [c for c in ("png", "image") if c in pq.read_schema(path).names]).to_pylist(), default=str).encode()
        for marker in markers:
            assert marker not in data, f"{marker!r} in {path}"


def test_two_ingests_are_byte_identical(built, tmp_path):
    work = tmp_path / "work"
    ingest.ingest(built.raw, work, config.profile("paper"), workers=1)
    produced = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file() and "time" not in p.name)
    original = sorted(p.relative_to(built.work) for p in (built.work / "images").rglob("*"))
    assert [p for p in produced if p.parts[0] == "images"] == original
    for relative in [*original, "records.parquet", "ingest_report.json"]:
        assert (work / relative).read_bytes() == (built.work / relative).read_bytes(), relative


def test_rerun_resumes_from_finished_shards_and_rebuilds_a_broken_one(built, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    profile = config.profile("paper")
    shards = sorted((work / "images").glob("images-*.parquet"))
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    (work / "images" / shards[-1].with_suffix(".json").name).unlink()  # as if killed before the sidecar
    ingest.ingest(built.raw, work, profile, workers=1)
    after = {p.name: p.stat().st_mtime_ns for p in sorted((work / "images").glob("images-*.parquet"))}
    assert [n for n in before if after[n] != before[n]] == [shards[-1].name]
    assert shards[-1].read_bytes() == (built.work / "images" / shards[-1].name).read_bytes()


def test_a_missing_source_is_skipped_with_a_warning(built, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(built.raw / "csxa", raw / "csxa")
    profile = {**config.profile("paper"), "imaging": {**config.profile("paper")["imaging"], "shard_rows": 7}}
    report = ingest.ingest(raw, tmp_path / "work", profile, workers=2)
    assert dict(report.counts["images"]) == {"csxa": built.manifest["counts"]["images_by_source"]["csxa"]}
    assert {w.source for w in report.warnings if "not found" in w.reason} == {"buu", "rsna", "vindr"}
    assert len(list((tmp_path / "work" / "images").glob("*.parquet"))) == -(-report.counts["images"]["csxa"] // 7)


def test_a_failing_reader_costs_only_the_rest_of_its_source(built, tmp_path, monkeypatch):
    from build import sources

    real = sources.READERS["csxa"]

    def breaks_after_two(folder, report):
        for count, record in enumerate(real(folder, report)):
            if count == 2:
                raise PermissionError("[Errno 13] Permission denied: 'images'")
            yield record

    monkeypatch.setitem(ingest.READERS, "csxa", breaks_after_two)
    report = ingest.ingest(built.raw, tmp_path / "work", config.profile("paper"), workers=2)
    assert report.counts["images"]["csxa"] == 2
    assert report.counts["images"]["rsna"] == built.manifest["counts"]["images_by_source"]["rsna"]
    failed = [issue for issue in report.rejected if issue.source == "csxa"]
    assert [issue.reason.split(" (")[0] for issue in failed] == ["reader failed"]
    assert "PermissionError" in failed[0].reason


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("fails_after", [0, 5])
def test_a_failure_in_the_job_stream_reaches_the_caller(built, tmp_path, workers, fails_after):
    """The readers run in the pool's feeder thread: their failure must surface here, not hang or vanish."""
    rows = pq.read_table(built.work / artifacts.RECORDS, columns=["image_id", "source", "path"]).to_pylist()

    def jobs():
        for row in rows[:fails_after]:
            yield ingest.Job(row["image_id"], row["source"], built.raw / row["source"] / row["path"], row["path"], 0)
        raise RuntimeError("label map bug")

    imaging = {**config.profile("paper")["imaging"], "shard_rows": 2}
    with pytest.raises(RuntimeError, match="label map bug"):
        list(ingest.standardize_shards(jobs(), tmp_path / "images", imaging, workers))


def test_points_outside_the_stored_size_are_warned_on_their_table_row():
    from build.records import Point, SourceRecord
    from build.report import StageReport

    points = [Point("t.csv", 2, 0, 0), Point("t.csv", 3, 64, 32), Point("t.csv", 4, 64.5, 1), Point("t.csv", 5, 1, -0.1)]
    record = SourceRecord("rsna", "1/2/3", "1", "MRI", "lumbar", "Axial T2", "train_images/1/2/3.dcm",
                          points=tuple(points))
    report = StageReport("ingest")
    ingest.check_points(record, 64, 32, report)  # the edges (0 and the size itself) are inside
    assert [(w.path, w.row) for w in report.warnings] == [("t.csv", 4), ("t.csv", 5)]
    assert report.warnings[0].reason == ("point x=64.5, y=1 lies outside the 64x32 slice 3.dcm (its stored Columns x "
                                         "Rows); finding kept")
