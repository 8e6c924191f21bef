"""Letters for options: a seeded order that keeps the gold letters balanced across A..E.

A model that prefers one letter must not gain from it. Each item's options get a random order; of that
order's five rotations we take the one that adds its gold letters where they have been used least so far, so
the gold-letter counts stay within one of uniform (single answers) whatever the seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from spinebench import LETTERS


def seeded_rng(seed: int, *stream: int | str) -> np.random.Generator:
    """An independent, reproducible random stream per purpose (questions, options, library, ...)."""
    words = [seed] + [int.from_bytes(s.encode(), "little") if isinstance(s, str) else s for s in stream]
    return np.random.default_rng(np.random.SeedSequence(words))


def arrange(options: Sequence[str], gold: set[str], used: Counter, rng: np.random.Generator
            ) -> tuple[list[str], list[str]]:
    """Order `options` (five distinct strings) and return (ordered options, sorted gold letters).

    `used` counts gold letters so far for this task and is updated in place.
    """
    if len(options) != len(LETTERS) or len(set(options)) != len(options):
        raise ValueError(f"need {len(LETTERS)} distinct options, got {list(options)}")
    if not gold or not gold <= set(options):
        raise ValueError(f"gold {sorted(gold)} is not a non-empty subset of the options {list(options)}")
    base = [options[i] for i in rng.permutation(len(options))]

    def cost(shift: int) -> tuple[int, int]:
        after = used.copy()
        after.update(LETTERS[(i + shift) % len(base)] for i, text in enumerate(base) if text in gold)
        return max(after.values()), sum(n * n for n in after.values())

    shift = min(range(len(base)), key=cost)
    ordered = base[-shift:] + base[:-shift] if shift else base
    letters = sorted(LETTERS[i] for i, text in enumerate(ordered) if text in gold)
    used.update(letters)
    return ordered, letters
