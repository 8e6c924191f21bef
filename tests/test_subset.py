"""Mini subset selection: quotas, balance, quality first, one item per patient first, determinism."""

import hashlib

import numpy as np

from build import subset
from build.subset import allocate, quality, select


def test_allocate_water_fills_small_groups_and_meets_the_quota():
    assert allocate({"a": 2, "b": 100, "c": 100}, 10) == {"a": 2, "b": 4, "c": 4}
    assert sum(allocate({"a": 50, "b": 50, "c": 50}, 10).values()) == 10
    assert allocate({"a": 3, "b": 1}, 10) == {"a": 3, "b": 1}  # shortfall: take all there is


def test_quality_ranks_within_each_source():
    # source y is uniformly blurrier, yet its best image ranks as high as x's best
    q = quality([1.0, 2.0, 0.1, 0.2], [0.5, 0.6, 0.05, 0.06], ["x", "x", "y", "y"])
    assert list(q) == [0.0, 1.0, 0.0, 1.0]


def test_select_prefers_quality_then_new_patients():
    ids = ["i0", "i1", "i2", "i3"]
    groups = ["d"] * 4
    patients = ["p1", "p1", "p2", "p3"]
    scores = [0.9, 0.8, 0.5, 0.1]
    chosen, share = select(ids, groups, patients, scores, 3, seed=0)
    assert chosen == ["i0", "i2", "i3"]  # p1's second image waits for every other patient
    assert share == {"d": 3}


def test_select_is_balanced_and_deterministic():
    rng = np.random.default_rng(0)
    groups = ["a"] * 500 + ["b"] * 300 + ["c"] * 40
    ids = [f"x{i}" for i in range(len(groups))]
    patients = [f"p{i}" for i in range(len(groups))]
    scores = list(rng.random(len(groups)))
    chosen, share = select(ids, groups, patients, scores, 300, seed=5)
    assert share == {"c": 40, "b": 130, "a": 130}
    assert len(chosen) == 300
    assert select(ids, groups, patients, scores, 300, seed=5)[0] == chosen


def test_avoided_ids_are_taken_only_when_their_group_has_nothing_else():
    ids = [f"i{n}" for n in range(6)]
    chosen, _ = subset.select(ids, ["a"] * 4 + ["b"] * 2, [f"p{n}" for n in range(6)], [1.0] * 6, 4, seed=0,
                              avoid=[True, False, False, True, True, True])
    assert set(chosen) == {"i1", "i2", "i4", "i5"}  # group a's two free ids; group b has only avoided ones


def test_a_max_share_cuts_the_subset_until_no_group_dominates():
    available = {"big": 100, "mid": 10, "small": 5}
    total = subset.capped_total(available, 100, 0.5)
    share = subset.allocate(available, total)
    assert max(share.values()) <= 0.5 * total and total == 30  # 15 + 10 + 5: one more and big > half
    assert subset.capped_total({"only": 50}, 10, 0.5) == 0


def test_equal_quality_is_broken_by_the_seeded_hash_whatever_the_input_order():
    """The documented rule: among equal scores, the smaller sha256 of "<seed>:<id>" goes first."""
    ids = [f"t{n}" for n in range(12)]

    def by_hash(seed: int) -> set[str]:  # the rule, computed here from its definition
        return set(sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:4])

    def chosen(order: list[str], seed: int) -> set[str]:
        return set(select(order, ["d"] * len(order), order, [0.5] * len(order), 4, seed=seed)[0])

    assert by_hash(0) != set(ids[:4]) and by_hash(0) != by_hash(1)  # neither input order nor seed-blind
    for seed in (0, 1):
        assert chosen(ids, seed) == chosen(ids[::-1], seed) == by_hash(seed)
