"""The items stage on the replicas: option invariants, balance, hard negatives, profiles, review, determinism."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest
from tiny_models import build_tiny_siglip2

from build import artifacts, config, ingest, items
from spinebench import HEALTHY, LETTERS, LEVELS


def load(work):
    return pq.read_table(work / items.QA).to_pylist()


@pytest.fixture(scope="module")
def qa(built):
    return load(built.work)


def by_task(qa, task):
    return [item for item in qa if item["task"] == task]


def test_every_diagnosis_item_has_five_distinct_options_with_healthy_and_one_gold(qa):
    for item in by_task(qa, "diagnosis"):
        assert len(item["options"]) == 5 == len(set(item["options"])), item["id"]
        assert HEALTHY in item["options"]
        assert len(item["answer"]) == 1
        assert item["options"][LETTERS.index(item["answer"][0])] == item["disease"] == item["answer_text"][0]


def test_every_localization_item_offers_the_five_levels_and_a_non_empty_gold_set(built, qa):
    sll = by_task(qa, "localization")
    assert len(sll) == sum(1 for image in built.manifest["images"] if image["levels"]) - short_csv_slips(built)
    for item in sll:
        assert sorted(item["options"]) == sorted(LEVELS)
        assert item["answer"] and {item["options"][LETTERS.index(a)] for a in item["answer"]} == set(item["levels"])


def short_csv_slips(built) -> int:
    """Planted BUU images whose CSV is short keep their slip but lose their levels (no SLL item)."""
    short = {case["image_key"] for case in built.manifest["edge_cases"] if case["kind"] == "short_csv"}
    return sum(1 for image in built.manifest["images"] if image["image_key"] in short and image["levels"])


@pytest.mark.parametrize("task", ["diagnosis", "localization"])
def test_gold_letters_are_within_a_few_points_of_uniform(qa, task):
    letters = Counter(letter for item in by_task(qa, task) for letter in item["answer"])
    shares = [letters[letter] / sum(letters.values()) for letter in LETTERS]
    assert max(abs(share - 0.2) for share in shares) < 0.03, shares


def test_questions_use_every_wording_evenly(qa):
    for task in ("diagnosis", "localization"):
        used = Counter(item["question_id"] for item in by_task(qa, task))
        assert len(used) == len(config.load("questions")[task]) >= 12
        assert max(used.values()) - min(used.values()) <= 1


def test_hard_negatives_follow_the_planted_lookalikes(built, qa):
    """Diseases the generator draws alike are offered as each other's distractors far above chance (3/10)."""
    offered = total = 0
    for group in built.manifest["lookalikes"]:
        for disease in group:
            mates = set(group) - {disease}
            cases = [i for i in by_task(qa, "diagnosis") if i["disease"] == disease]
            offered += sum(bool(mates & set(i["options"])) for i in cases)
            total += len(cases)
    assert total >= 30 and offered / total > 0.8


def test_items_are_byte_identical_across_runs_and_cache_the_embeddings(built, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    (work / items.QA).unlink()
    caches = sorted((work / "embeddings").glob("*/images-*.parquet"))  # one per image shard
    assert [p.stem for p in caches] == sorted(p.stem for p in (work / "images").glob("images-*.parquet"))
    before = [p.stat().st_mtime_ns for p in caches]
    items.make_items(work, config.profile("paper"), "fallback", 32, "cpu", None)
    assert (work / items.QA).read_bytes() == (built.work / items.QA).read_bytes()
    assert [p.stat().st_mtime_ns for p in caches] == before  # every vector came from the cache: nothing to save


def test_review_decisions_remove_and_correct_items(built, qa, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    sdd, sll = by_task(qa, "diagnosis"), by_task(qa, "localization")
    other = next(o for o in sdd[1]["options"] if o != sdd[1]["disease"])
    lines = [
        {"id": sdd[0]["id"], "decision": "reject", "reviewer": "ana", "time": "2026-11-28T10:00:00Z"},
        {"id": sdd[1]["id"], "decision": "correct", "fields": {"disease": other}, "reviewer": "bo",
         "time": "2026-11-28T10:01:00Z"},
        {"id": sll[0]["id"], "decision": "correct", "fields": {"levels": ["L5/S1"]}, "reviewer": "bo",
         "time": "2026-11-28T10:02:00Z"},
    ]
    decisions = work / items.DECISIONS
    decisions.parent.mkdir(parents=True)
    decisions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = items.make_items(work, config.profile("paper"), "fallback", 32, "cpu", decisions)
    after = {item["id"]: item for item in load(work)}
    assert after[sdd[0]["id"]]["review"] == "reject" and not after[sdd[0]["id"]]["mini"]
    assert len(after) == len(qa) and report.counts["items"]["diagnosis"] == len(sdd) - 1
    assert after[sdd[1]["id"]]["disease"] == other and after[sdd[1]["id"]]["answer_text"] == [other]
    assert after[sll[0]["id"]]["levels"] == ["L5/S1"] and len(after[sll[0]["id"]]["answer"]) == 1
    assert report.counts["review"]["reject"] == 1 and report.counts["review"]["correct"] == 2


def test_mini_takes_its_quota_balanced_over_diseases(built, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built.work, work)
    profile = {**config.profile("paper"), "mini": {"diagnosis": 60, "localization": 30}}
    items.make_items(work, profile, "fallback", 32, "cpu", None)
    mini = [item for item in load(work) if item["mini"]]
    assert len(by_task(mini, "diagnosis")) == 60 and len(by_task(mini, "localization")) == 30
    counts = Counter(item["disease"] for item in by_task(mini, "diagnosis"))
    available = Counter(item["disease"] for item in by_task(load(work), "diagnosis"))
    fair = 60 // len(available)
    assert all(counts[d] == available[d] or counts[d] >= fair for d in available), counts


@pytest.fixture(scope="module")
def clinical(built, tmp_path_factory):
    work = tmp_path_factory.mktemp("clinical") / "work"
    profile = config.profile("clinical")
    report = ingest.ingest(built.raw, work, profile, workers=2)
    items.make_items(work, profile, "fallback", 32, "cpu", None)
    return work, report


def test_clinical_never_offers_a_disease_present_in_the_image(clinical):
    qa = load(clinical[0])
    multi = [i for i in by_task(qa, "diagnosis") if len(i["present"]) > 1]
    assert multi, "the replicas plant multi-lesion VinDr images"
    for item in multi:
        assert not (set(item["present"]) - {item["disease"]}) & set(item["options"]), item["id"]


def test_paper_offers_present_diseases_somewhere(qa):
    """The weakness the clinical profile fixes is real in the paper profile (else the test above proves nothing)."""
    assert any((set(i["present"]) - {i["disease"]}) & set(i["options"]) for i in by_task(qa, "diagnosis"))


def test_clinical_counts_only_moderate_and_severe_levels(built, clinical):
    work, report = clinical
    for item in by_task(load(work), "localization"):
        if item["source"] == "rsna":
            assert item["severity"] in ("Moderate", "Severe")
    planted = [entry for image in built.manifest["images"] if image["source"] == "rsna"
               for entries in image["levels"].values() for entry in entries]
    assert any(entry["severity"] == "Normal/Mild" for entry in planted)
    assert any("Moderate" in issue.reason for issue in report.dropped)


def test_clinical_rules_out_fewer_options_by_modality(built, clinical):
    paper = json.loads((built.work / "items_report.json").read_text())["counts"]["diagnosis/modality_rule_out"]
    ours = json.loads((clinical[0] / "items_report.json").read_text())["counts"]["diagnosis/modality_rule_out"]
    assert sum(ours.values()) < sum(paper.values())


def test_tiny_siglip2_runs_through_the_items_stage(built, tmp_path):
    model = build_tiny_siglip2(tmp_path / "siglip2")
    work = tmp_path / "work"
    shutil.copytree(built.work, work, ignore=shutil.ignore_patterns("qa.parquet"))
    items.make_items(work, config.profile("paper"), str(model), 16, "cpu", None)
    assert len(load(work)) == len(load(built.work))
    names = sorted(p.name for p in (work / "embeddings").iterdir())  # a cache folder per embedder
    assert len(names) == 2 and any(name.startswith("siglip2") for name in names)
    assert json.loads((work / items.ITEMS_SETTINGS).read_text())["embedder"].startswith("siglip2:")


def test_profile_recorded_at_ingest(built):
    assert artifacts.read_json(built.work / artifacts.PROFILE) == {"profile": "paper"}


def test_paper_quotas_fill_on_a_large_enough_replica(tmp_path):
    """1,758 + 1,000 as in the paper, balanced over diseases, when the data allow (scale 5 ~ 1,900 images)."""
    from build.replicas import generate

    generate(tmp_path / "raw", scale=5, seed=1)
    profile = config.profile("paper")
    ingest.ingest(tmp_path / "raw", tmp_path / "work", profile, workers=2)
    report = items.make_items(tmp_path / "work", profile, "fallback", 64, "cpu", None)
    qa = load(tmp_path / "work")
    mini = [item for item in qa if item["mini"]]
    assert report.counts["mini"] == {"diagnosis": 1758, "localization": 1000}
    for task in ("diagnosis", "localization"):
        chosen = Counter(item["disease"] for item in by_task(mini, task))
        available = Counter(item["disease"] for item in by_task(qa, task))
        capped = [d for d in available if chosen[d] < available[d]]  # diseases that had more to give
        assert capped and max(chosen[d] for d in capped) - min(chosen[d] for d in capped) <= 1, chosen
        assert all(chosen[d] >= min(chosen[c] for c in capped) or chosen[d] == available[d] for d in available)


@pytest.fixture(scope="module")
def valid(built, tmp_path_factory):
    work = tmp_path_factory.mktemp("valid") / "work"
    profile = config.profile("valid")
    ingest.ingest(built.raw, work, profile, workers=2)
    items.make_items(work, profile, "fallback", 32, "cpu", None)
    return work


def audit_of(work):
    return json.loads((work / "items_report.json").read_text())["audit"]


def test_every_items_run_writes_the_audit_for_every_configuration(built, valid):
    for work in (built.work, valid):
        found = audit_of(work)
        assert set(found["configs"]) == {"full", "diagnosis", "localization", "mini"}
        assert found == json.loads((work / items.ITEMS_SETTINGS).read_text())["audit"]
        assert found["mean_distractor_similarity_rank"] >= 1


def test_the_paper_leak_is_measured_and_the_valid_profile_removes_most_of_it(built, valid):
    paper, ours = (audit_of(w)["configs"]["full"]["diagnosis"] for w in (built.work, valid))
    assert paper["option_set_prior"] > 0.5  # the paper's rule: the option set tells the gold
    assert ours["option_set_prior"] < paper["option_set_prior"] - 0.2
    assert ours["lone_family"] < paper["lone_family"]


def test_valid_labels_healthy_on_mri_and_asks_sdd_only_of_slices_that_show_every_condition(valid):
    qa = load(valid)
    rsna = [i for i in by_task(qa, "diagnosis") if i["source"] == "rsna"]
    assert rsna and {i["view"] for i in rsna} == {"Axial T2"}
    assert HEALTHY in {i["disease"] for i in rsna}
    assert len({i["disease"] for i in rsna}) == 4  # subarticular, canal, foraminal, healthy
    for item in by_task(qa, "diagnosis"):
        assert len(set(item["present"]) - {HEALTHY}) <= 1 and item["disease"] in item["options"]
    assert any(i["source"] == "rsna" and i["view"] != "Axial T2" for i in by_task(qa, "localization"))


def test_items_refuse_a_profile_whose_ingest_settings_differ(built, capsys):
    parser = items.argparse.ArgumentParser()
    items.add_arguments(parser)
    with pytest.raises(SystemExit, match="rerun ingest"):
        items.main(parser.parse_args(["--work", str(built.work), "--profile", "clinical"]))
