"""The exported Hub folder, loaded exactly as users load it (offline), and the builder behind it."""

from __future__ import annotations

import json
import shutil

import datasets
import pyarrow.parquet as pq
import pytest
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard
from PIL import Image

from build import config, export, hubcheck, push
from spinebench import CONFIG_NAMES, FEATURES, LETTERS, SpineBench


@pytest.fixture(scope="module")
def loaded(built):
    return {name: datasets.load_dataset(str(built.hub), name, split="test") for name in CONFIG_NAMES}


def test_every_configuration_loads_with_the_declared_features(loaded):
    for name, dataset in loaded.items():
        assert dataset.features == FEATURES, name
        assert len(dataset) > 0


def test_images_decode_to_rgb(loaded):
    for row in loaded["mini"].select(range(10)):
        assert isinstance(row["image"], Image.Image) and row["image"].mode == "RGB"


def test_full_is_diagnosis_plus_localization_and_mini_is_within_full(loaded, built):
    ids = {name: list(dataset["id"]) for name, dataset in loaded.items()}
    assert sorted(ids["full"]) == sorted(ids["diagnosis"] + ids["localization"])
    assert set(ids["mini"]) <= set(ids["full"])
    for name in CONFIG_NAMES:
        assert len(set(ids[name])) == len(ids[name]), name
    reported = json.loads((built.work / "items_report.json").read_text())["counts"]["mini"]
    tasks = list(loaded["mini"]["task"])
    assert {task: tasks.count(task) for task in set(tasks)} == reported


def test_gold_letters_lie_inside_the_options(loaded):
    for row in loaded["full"].remove_columns("image"):
        assert set(row["answer"]) <= set(LETTERS[: len(row["options"])])
        assert [row["options"][LETTERS.index(a)] for a in row["answer"]] == row["answer_text"]


def test_streaming_gives_the_same_rows(built, loaded):
    streamed = datasets.load_dataset(str(built.hub), "localization", split="test", streaming=True)
    assert streamed.features == FEATURES
    rows = list(streamed)  # read to the end: an abandoned streaming reader can abort the process at exit
    assert [row["id"] for row in rows] == list(loaded["localization"]["id"])
    assert all(row["image"].mode == "RGB" for row in rows)


def test_card_yaml_parses_with_the_library_readers(built):
    data = DatasetCard.load(built.hub / "README.md").data
    configs = MetadataConfigs.from_dataset_card_data(data)
    infos = DatasetInfosDict.from_dataset_card_data(data)
    assert sorted(configs) == sorted(infos) == sorted(CONFIG_NAMES)
    assert configs["mini"]["default"] is True
    assert configs["full"]["data_files"][0]["path"] == ["data/diagnosis/test-*.parquet",
                                                        "data/localization/test-*.parquet"]
    assert data.license == "other" and data.license_name and (built.hub / data.license_link).exists()
    assert not list(built.hub.glob("*.py"))
    text = (built.hub / "README.md").read_text()
    assert "{{" not in text and "Silversorrow/SpineBench" in text and "2510.03160" in text


def test_card_opens_with_the_build_and_its_audit_and_has_a_table_per_configuration(built):
    import json

    body = (built.hub / "README.md").read_text().split("\n---\n", 1)[1]  # after the YAML front matter
    first = body.split("# SpineBench", 1)[1].strip().split("\n\n", 1)[0]
    audit = json.loads((built.work / "items_report.json").read_text())["audit"]
    assert "profile `paper`" in first and "`fallback" in first and "not SigLIP2" in first
    assert f"{100 * audit['headline']['text_only_full']:.1f}% on full SDD" in first
    section = body.split("## What a model gets without the image", 1)[1].split("\n## ", 1)[0]
    for config in ("full", "diagnosis", "localization", "mini"):
        assert f"**{config}**" in section
    option_set_prior = audit["configs"]["mini"]["diagnosis"]["option_set_prior"]
    assert f"| text-only: option-set prior | {100 * option_set_prior:.1f} | - |" in section


def test_full_stores_no_file_of_its_own(built):
    assert sorted(p.name for p in (built.hub / "data").iterdir()) == ["diagnosis", "localization", "mini"]


def test_builder_by_direct_instantiation_yields_the_parquet_rows(built, tmp_path):
    builder = SpineBench(config_name="localization", data_dir=str(built.work), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="parquet")
    ours = pq.read_table(next((tmp_path / "out").glob("*.parquet"))).to_pylist()
    published = pq.read_table(next((built.hub / "data" / "localization").glob("*.parquet"))).to_pylist()
    assert [r["id"] for r in ours] == [r["id"] for r in published]
    assert [r["image"]["bytes"] for r in ours] == [r["image"]["bytes"] for r in published]


def test_hub_check_reports_viewer_figures(built):
    result = hubcheck.check(built.hub)
    assert result.ok, result.summary()
    assert 0 < result.figures["largest_row_group_mb"] < hubcheck.ROW_GROUP_LIMIT_MB
    assert 0 < result.figures["largest_image_kb"] < hubcheck.IMAGE_LIMIT_KB


@pytest.fixture(scope="module")
def public(built, tmp_path_factory):
    return export.export(built.work, tmp_path_factory.mktemp("public"), public=True)


def test_public_export_holds_no_pixels_of_pointer_sources(public):
    pointer = {name for name, s in config.load("sources").items() if s["redistribution"] == "pointer"}
    assert pointer == {"rsna", "vindr"}
    for path in public.glob("data/*/*.parquet"):
        for row in pq.read_table(path, columns=["source", "image", "image_path"]).to_pylist():
            assert (row["image"] is None) == (row["source"] in pointer), row["image_path"]
    assert hubcheck.check(public).ok


def rehydrated_and_embedded(raw, public, built, tmp_path) -> tuple[dict, dict]:
    """Image bytes by item id: the builder's, rehydrated from `raw` into the public export, and the embedded
    export's (diagnosis + localization: every item once)."""
    builder = SpineBench(config_name="full", data_dir=str(raw), published=str(public), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="parquet")
    rehydrated = {r["id"]: r["image"]["bytes"] for p in (tmp_path / "out").glob("*.parquet")
                  for r in pq.read_table(p, columns=["id", "image"]).to_pylist()}
    embedded = {r["id"]: r["image"]["bytes"] for p in built.hub.glob("data/[dl]*/*.parquet")
                for r in pq.read_table(p, columns=["id", "image"]).to_pylist()}
    return rehydrated, embedded


def test_builder_rehydrates_pointer_rows_to_the_same_bytes(built, public, tmp_path):
    rehydrated, embedded = rehydrated_and_embedded(built.raw, public, built, tmp_path)
    assert rehydrated == embedded


def test_rehydration_works_from_a_differently_laid_out_download(built, public, tmp_path):
    """The build read RSNA nested and VinDr as PhysioNet's unzipped folder; this user has Kaggle's zip and a
    wget mirror of PhysioNet, and gets the same bytes (each row's pixels are sha256-checked)."""
    from build.replicas import layouts

    raw = tmp_path / "raw"
    for source, variant in (("rsna", "zip-flat"), ("vindr", "wget")):
        shutil.copytree(built.raw / source, raw / source)
        layouts.apply(raw / source, source, variant)
    paths = [r["image_path"] for p in public.glob("data/*/*.parquet")
             for r in pq.read_table(p, columns=["image_path"]).to_pylist()]
    assert paths and not any(layouts.rsna.ROOT in p or layouts.vindr.ROOT in p for p in paths)
    rehydrated, embedded = rehydrated_and_embedded(raw, public, built, tmp_path)
    assert rehydrated == embedded


def test_push_dry_run_lists_the_folder_and_sends_nothing(built, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda *a, **k: pytest.fail("network"))
    parser = push.argparse.ArgumentParser()
    push.add_arguments(parser)
    code = push.main(parser.parse_args(["--out", str(built.hub.parent), "--repo", "org/spinebench",
                                        "--allow-fallback-embedder", "--allow-unreviewed"]))
    out = capsys.readouterr().out
    assert code == 0 and "dry run" in out
    listed = {line.split()[-1] for line in out.splitlines() if " MB  " in line}
    assert listed == {name for name, _ in push.plan(built.hub)}
    assert {"README.md", "LICENSE.md", "spinebench_build.json"} <= listed
    assert all(not name.endswith(".py") for name in listed)


@pytest.mark.parametrize("allowed", [[], ["--allow-fallback-embedder"], ["--allow-unreviewed"]])
def test_push_refuses_a_fallback_or_unreviewed_build_unless_told(built, capsys, allowed):
    """The demo build has fallback hard negatives and no review: each needs its own explicit flag."""
    parser = push.argparse.ArgumentParser()
    push.add_arguments(parser)
    code = push.main(parser.parse_args(["--out", str(built.hub.parent), "--repo", "org/x", *allowed]))
    out = capsys.readouterr().out
    assert code == 1 and " MB  " not in out
    assert ("fallback" in out) == ("--allow-fallback-embedder" not in allowed)
    assert ("review" in out) == ("--allow-unreviewed" not in allowed)


def test_push_refuses_a_folder_that_fails_the_checks(built, tmp_path, capsys):
    import shutil

    shutil.copytree(built.hub, tmp_path / "spinebench")
    (tmp_path / "spinebench" / "spinebench.py").write_text("# would break load_dataset\n")
    parser = push.argparse.ArgumentParser()
    push.add_arguments(parser)
    assert push.main(parser.parse_args(["--out", str(tmp_path), "--repo", "org/x"])) == 1
    assert "refused" in capsys.readouterr().out


def test_a_rejected_item_leaves_every_configuration(built, tmp_path):
    import shutil

    from build import items

    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    qa = pq.read_table(work / items.QA).to_pylist()
    victim = next(i for i in qa if i["task"] == "localization" and i["mini"])
    decisions = work / items.DECISIONS
    decisions.parent.mkdir(parents=True)
    decisions.write_text(json.dumps({"id": victim["id"], "decision": "reject", "reviewer": "ana",
                                     "time": "2026-11-28T10:00:00Z"}) + "\n")
    items.make_items(work, config.profile("paper"), "fallback", 32, "cpu", decisions)
    hub = export.export(work, tmp_path / "out")
    for name in CONFIG_NAMES:
        rows = datasets.load_dataset(str(hub), name, split="test", streaming=True).remove_columns("image")
        ids = {row["id"] for row in rows}
        assert victim["id"] not in ids, name
    assert "rejected and left out: 1" in (hub / "README.md").read_text()


def test_the_card_warns_loudly_about_a_source_far_below_its_release(built):
    card = (built.hub / "README.md").read_text(encoding="utf-8")
    found = json.loads((built.work / "sources.json").read_text())
    for source in ("buu", "csxa", "rsna", "vindr"):  # replicas are ~0.5% of the releases
        entry = found[source]
        assert entry["far_below"] and entry["found"] > 0
        assert (f"**WARNING: {source} is incomplete in this build**: {entry['found']:,} {entry['unit']} of the "
                f"{entry['expected']:,} its release holds") in card
