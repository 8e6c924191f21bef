"""Letter assignment: gold letters balanced, options intact, order reproducible."""

from collections import Counter

import pytest

from build.options import arrange, seeded_rng
from spinebench import LEVELS

DISEASES5 = ["Osteophytes", "Healthy", "Vertebral collapse", "Spondylolisthesis", "Disc space narrowing"]


def test_single_gold_letter_is_exactly_balanced():
    rng, used = seeded_rng(1, "t"), Counter()
    for _ in range(1000):
        options, letters = arrange(DISEASES5, {"Osteophytes"}, used, rng)
        assert sorted(options) == sorted(DISEASES5)
        assert options["ABCDE".index(letters[0])] == "Osteophytes"
    assert sorted(used.values()) == [200] * 5  # 1000 items over 5 letters, within one of uniform


def test_multi_gold_sets_stay_close_to_uniform():
    rng, used = seeded_rng(2, "t"), Counter()
    pick = seeded_rng(3, "gold")
    for _ in range(600):
        gold = set(pick.choice(LEVELS, size=pick.integers(1, 4), replace=False))
        options, letters = arrange(LEVELS, gold, used, rng)
        assert {options["ABCDE".index(letter)] for letter in letters} == gold
    assert max(used.values()) - min(used.values()) <= 2


def test_same_seed_same_order_other_seed_differs():
    def run(seed):
        rng, used = seeded_rng(seed, "t"), Counter()
        return [arrange(DISEASES5, {"Healthy"}, used, rng)[0] for _ in range(20)]

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("options,gold", [(DISEASES5[:4], {"Healthy"}), (DISEASES5, {"Cervical kyphosis"}),
                                          (DISEASES5[:4] + ["Healthy"], {"Healthy"}), (DISEASES5, set())])
def test_bad_option_sets_are_refused(options, gold):
    with pytest.raises(ValueError):
        arrange(options, gold, Counter(), seeded_rng(0))
