"""Hard negatives on hand-made embeddings where the right answer is obvious."""

from collections import Counter

import numpy as np
import pytest

from build import distractors
from spinebench import DISEASES, HEALTHY


def similarity(vectors, library, how):
    """Every image against the library, the way items feeds it block by block."""
    lib = vectors[distractors.library_rows(library)]
    return distractors.disease_similarity(vectors, np.arange(len(vectors)), library, lib, how)


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def toy():
    """Three X-ray diseases on three axes; Osteophytes lie close to Disc space narrowing."""
    labels = ["Disc space narrowing"] * 3 + ["Osteophytes"] * 3 + ["Vertebral collapse"] * 3 + [HEALTHY] * 3
    base = {"Disc space narrowing": [1, 0, 0], "Osteophytes": [0.9, 0.3, 0], "Vertebral collapse": [0, 1, 0],
            HEALTHY: [0, 0, 1]}
    vectors = np.stack([unit(np.array(base[d]) + 0.01 * i) for i, d in enumerate(labels)])
    return labels, vectors


@pytest.mark.parametrize("how", ["mean", "max"])
def test_nearest_disease_ranks_first(toy, how):
    labels, vectors = toy
    library = distractors.pick_library(labels, 200, seed=0)
    scores = similarity(vectors, library, how)
    context = distractors.Context.from_images(labels, ["X-ray"] * 12, ["lumbar"] * 12)
    chosen = distractors.choose("Disc space narrowing", ["Disc space narrowing"], scores[0], "X-ray", "lumbar",
                                context, exclude_present=False, modality_aware=False)
    assert chosen[0] == "Osteophytes" and len(chosen) == 3 and HEALTHY not in chosen
    healthy = distractors.choose(HEALTHY, [HEALTHY], scores[9], "X-ray", "lumbar", context, False, False)
    assert len(healthy) == 4 and HEALTHY not in healthy


def test_an_image_does_not_count_itself(toy):
    labels, vectors = toy
    library = {"Osteophytes": np.array([3])}  # only image 3 in the library
    scores = similarity(vectors, library, "mean")
    assert np.isnan(scores[3, DISEASES.index("Osteophytes")])
    assert scores[4, DISEASES.index("Osteophytes")] == pytest.approx(float(vectors[4] @ vectors[3]), abs=1e-6)


def test_library_is_capped_and_seeded():
    labels = ["Osteophytes"] * 50 + ["Healthy"] * 5
    a = distractors.pick_library(labels, 10, seed=1)
    assert len(a["Osteophytes"]) == 10 and len(a["Healthy"]) == 5
    assert np.array_equal(a["Osteophytes"], distractors.pick_library(labels, 10, seed=1)["Osteophytes"])
    assert not np.array_equal(a["Osteophytes"], distractors.pick_library(labels, 10, seed=2)["Osteophytes"])


def test_clinical_never_offers_present_and_prefers_same_modality(toy):
    labels, vectors = toy
    labels = labels + ["Spinal canal stenosis"]
    vectors = np.vstack([vectors, unit([1, 0.05, 0])])  # looks like Disc space narrowing but is MRI
    modalities = ["X-ray"] * 12 + ["MRI"]
    context = distractors.Context.from_images(labels, modalities, ["lumbar"] * 13)
    scores = similarity(vectors, distractors.pick_library(labels, 200, 0), "max")
    present = ["Disc space narrowing", "Osteophytes"]
    paper = distractors.choose("Disc space narrowing", present, scores[0], "X-ray", "lumbar", context, False, False)
    clinical = distractors.choose("Disc space narrowing", present, scores[0], "X-ray", "lumbar", context, True, True)
    assert "Osteophytes" in paper and "Spinal canal stenosis" in paper
    assert "Osteophytes" not in clinical
    # the MRI-only look-alike loses its place to X-ray-compatible diseases (ranked by similarity, then unseen)
    assert clinical[0] == "Vertebral collapse" and "Spinal canal stenosis" not in clinical
    assert context.ruled_out_by_modality("Spinal canal stenosis", "X-ray")
    assert not context.ruled_out_by_modality(HEALTHY, "MRI")


def test_a_block_scores_as_it_would_among_all_images(toy, monkeypatch):
    labels, vectors = toy
    library = distractors.pick_library(labels, 2, seed=0)
    whole = similarity(vectors, library, "mean")
    lib = vectors[distractors.library_rows(library)]
    monkeypatch.setattr(distractors, "CHUNK", 2)  # blocks inside the call, too
    block = distractors.disease_similarity(vectors[5:11], np.arange(5, 11), library, lib, "mean")
    assert np.array_equal(block, whole[5:11], equal_nan=True)


def test_similarity_ranks_count_from_the_nearest():
    scores = np.full(len(DISEASES), np.nan)
    for rank, disease in enumerate(["Osteophytes", "Vertebral collapse", "Foraminal stenosis"]):
        scores[DISEASES.index(disease)] = 0.9 - 0.1 * rank
    assert distractors.similarity_ranks("Disc space narrowing", ["Osteophytes", "Foraminal stenosis"], scores) == [1, 3]


def test_the_set_balancer_offers_the_whole_family_and_spreads_the_rest():
    """MRI images: the two other MRI diseases are always offered; the third slot rotates so each set is
    used with each of its members as gold as evenly as the images allow."""
    balancer = distractors.SetBalancer(candidates=4)
    mri = frozenset({"Subarticular stenosis", "Spinal canal stenosis", "Foraminal stenosis", HEALTHY})
    xray = ["Osteophytes", "Disc space narrowing", "Vertebral collapse", "Spondylolisthesis"]
    sets = Counter()
    for n in range(120):
        truth = sorted(mri)[n % 4]
        ranked = [d for d in sorted(mri - {HEALTHY}) if d != truth] + xray
        chosen = balancer.choose(truth, ranked, own=mri)
        assert len(chosen) == distractors.wanted(truth) and (mri - {truth, HEALTHY}) <= set(chosen)
        sets[frozenset([truth, HEALTHY, *chosen])] += 1
    for golds in balancer.gold.values():  # the X-ray member is never gold here: balance among the MRI ones
        assert max(golds.values()) - min(golds[m] for m in mri) <= 1, golds
    assert len(sets) > 1  # the free slot is not always the nearest X-ray disease
