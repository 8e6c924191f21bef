"""The validity audit on item sets whose exploitability is known by construction."""

from itertools import combinations

import numpy as np
import pytest

from build import audit
from spinebench import HEALTHY, LETTERS, LEVELS

XRAY = ["Osteophytes", "Disc space narrowing", "Vertebral collapse", "Spondylolisthesis"]
CERVICAL = ["Cervical lordosis", "Cervical kyphosis", "Straight cervical vertebrae", "Sigmoid cervical vertebrae"]
MRI = ["Subarticular stenosis", "Spinal canal stenosis", "Foraminal stenosis"]
SOURCE = {**{d: "vindr" for d in XRAY}, **{d: "csxa" for d in CERVICAL}, **{d: "rsna" for d in MRI},
          HEALTHY: "vindr"}


def sdd(n, gold, options, rng, patient=None, view="lateral", question=None):
    order = rng.permutation(5)
    options = [options[i] for i in order]
    return {"id": f"{n}-sdd", "task": "diagnosis", "options": options, "answer_text": [gold],
            "answer": [LETTERS[options.index(gold)]], "disease": gold, "source": SOURCE[gold],
            "patient_id": patient or f"p{n}", "modality": "MRI" if gold in MRI else "X-ray", "region": "lumbar",
            "view": view, "question_id": question or f"q{rng.integers(12)}", "mini": n % 2 == 0}


def sll(n, levels, rng, question=None):
    options = [LEVELS[i] for i in rng.permutation(5)]
    return {"id": f"{n}-sll", "task": "localization", "options": options,
            "answer_text": [o for o in options if o in levels], "disease": "Spinal canal stenosis",
            "source": "rsna", "patient_id": f"p{n}", "modality": "MRI", "region": "lumbar", "view": "Sagittal T1",
            "question_id": question or f"q{rng.integers(12)}", "mini": n % 2 == 0}


def balanced_sdd(n_items, rng):
    """Every option set used with each of its members as gold equally often: nothing to learn."""
    pool = XRAY + CERVICAL[:2]
    sets = [list(c) + [HEALTHY] for c in combinations(pool, 4)]
    return [sdd(n, options[n % 5], options, rng) for n, options in
            ((n, sets[(n // 5) % len(sets)]) for n in range(n_items))]


def test_a_balanced_design_scores_chance():
    rng = np.random.default_rng(0)
    result = audit.audit(balanced_sdd(3000, rng), seed=1)
    figures = result["configs"]["full"]["diagnosis"]
    for key in ("option_set_prior", "text_model", "sequence_only"):
        assert 0.15 < figures[key] < 0.25, (key, figures[key])
    assert figures["max_p_gold_given_set"] <= 0.25
    assert figures["always_healthy"] == pytest.approx(0.2)
    assert figures["chance"] == pytest.approx(0.2)


def test_a_planted_option_set_leak_is_found():
    """Each disease always comes with its own fixed distractors (the paper's rule, exaggerated)."""
    rng = np.random.default_rng(0)
    pool = XRAY + CERVICAL
    items = []
    for n in range(2000):
        k = n % len(pool)
        gold, others = pool[k], [pool[(k + j) % len(pool)] for j in (1, 2, 3)]  # set k is {k, .., k+3}
        items.append(sdd(n, gold, [gold, *others, HEALTHY], rng))
    figures = audit.audit(items, seed=1)["configs"]["full"]["diagnosis"]
    assert figures["option_set_prior"] > 0.95
    assert figures["text_model"] > 0.95
    assert figures["max_p_gold_given_set"] == 1.0


def test_a_gold_letter_leak_is_found_by_the_text_model():
    """Balanced option sets, but the gold is always at letter B: only the learned model can see that."""
    items = balanced_sdd(2000, np.random.default_rng(0))
    for item in items:
        options = [o for o in item["options"] if o != item["disease"]]
        item["options"] = options[:1] + [item["disease"]] + options[1:]
        item["answer"] = ["B"]
    figures = audit.audit(items, seed=1)["configs"]["full"]["diagnosis"]
    assert figures["text_model"] > 0.95
    assert figures["option_set_prior"] < 0.3


def test_the_lone_family_option_is_found_without_training():
    """An MRI gold among X-ray distractors, and the reverse: the odd one out is the answer."""
    rng = np.random.default_rng(0)
    odd = [sdd(n, MRI[n % 3], [MRI[n % 3], *XRAY[:3], HEALTHY], rng) for n in range(300)]
    xray = [sdd(n, XRAY[n % 4], [*XRAY, HEALTHY], rng) for n in range(300, 400)]  # no lone option: chance
    items = odd + xray
    figures = audit.audit(items, seed=1)["configs"]["full"]["diagnosis"]
    assert figures["lone_family"] == pytest.approx((300 + 100 * 0.2) / 400)


def test_the_sequence_decides_the_label_is_found():
    rng = np.random.default_rng(0)
    options = [*MRI, "Osteophytes", HEALTHY]
    items = [sdd(n, MRI[n % 3], options, rng, view=["Axial T2", "Sagittal T1", "Sagittal T2"][n % 3])
             for n in range(600)]
    figures = audit.audit(items, seed=1)["configs"]["full"]["diagnosis"]
    assert figures["sequence_only"] == 1.0
    assert figures["option_set_prior"] == pytest.approx(1 / 3, abs=0.05)  # one set, three golds


def test_constant_sll_answers():
    rng = np.random.default_rng(0)
    items = [sll(n, LEVELS if n % 4 == 0 else [LEVELS[n % 5]], rng) for n in range(400)]
    sll_figures = audit.audit(items, seed=1)["configs"]["localization"]["localization"]
    share_all = sum(1 for i in items if len(i["answer_text"]) == 5) / len(items)
    assert sll_figures["best_fixed_set"] == pytest.approx(share_all, abs=1e-4)
    assert sll_figures["best_fixed_levels"] == list(LEVELS)
    assert sll_figures["gold_sets"][0] == {"levels": list(LEVELS), "share": round(share_all, 4)}
    # each level is in fewer than half the gold sets, so the majority answer is the empty set: never right
    assert sll_figures["per_level_majority_levels"] == [] and sll_figures["per_level_majority"] == 0


def test_the_question_wording_leak_in_sll_is_found():
    rng = np.random.default_rng(0)
    items = [sll(n, [LEVELS[n % 5]], rng, question=f"q{n % 5}") for n in range(500)]
    assert audit.audit(items, seed=1)["configs"]["full"]["localization"]["question_prior"] == 1.0


def test_deterministic_given_the_seed_and_patient_disjoint():
    rng = np.random.default_rng(3)
    items = balanced_sdd(500, rng) + [sll(1000 + n, [LEVELS[n % 5]], rng) for n in range(200)]
    for n, item in enumerate(items):
        item["patient_id"], item["source"] = f"p{n // 3}", "vindr"  # three items per patient
    assert audit.audit(items, seed=5) == audit.audit(items, seed=5)
    folds = audit.patient_folds(items, 5, 0, 2)
    by_patient = {}
    for item, fold in zip(items, folds):
        assert by_patient.setdefault(item["patient_id"], fold) == fold


def test_markdown_has_a_table_per_configuration():
    rng = np.random.default_rng(0)
    items = balanced_sdd(200, rng) + [sll(1000 + n, [LEVELS[n % 5]], rng) for n in range(100)]
    text = audit.markdown(audit.audit(items, seed=1, distractor_rank=2.5))
    for config in audit.CONFIGS:
        assert f"**{config}**" in text
    assert text.count("| attack (no image) |") == 4 and "2.50" in text
