"""The mini subset (the paper's SpineBench-Sub): clear, high-contrast images, balanced over diseases.

The paper names the criteria (clarity, contrast, label balance) but not the procedure, so ours is:
- quality of an image = mean of its clarity percentile and its contrast percentile, both ranked within its
  own source (sources differ in how sharp and contrasted their images are; a source must not lose out
  because of its scanner);
- each task's quota is split over its diseases as evenly as the data allow (water-filling: a disease with too
  few items gives its share to the others);
- within a disease (or whatever balance cell the profile names), images the other task's mini does not use
  first (`avoid`: the two tasks see distinct images where the data allow), then best quality first, one
  item per patient before a patient's second item;
- ties broken by a seeded hash, so the choice is deterministic and changes only with the seed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def quality(clarity: Sequence[float], contrast: Sequence[float], sources: Sequence[str]) -> np.ndarray:
    """Per image, in [0, 1]: the mean within-source percentile rank of clarity and of contrast."""
    clarity, contrast, sources = np.asarray(clarity), np.asarray(contrast), np.asarray(sources)
    out = np.zeros(len(sources))
    for source in np.unique(sources):
        members = np.flatnonzero(sources == source)
        out[members] = (_percentile_rank(clarity[members]) + _percentile_rank(contrast[members])) / 2
    return np.round(out, 6)


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank in [0, 1]; equal values share their mean rank."""
    if len(values) == 1:
        return np.ones(1)
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks / (len(values) - 1)


def allocate(available: dict[str, int], quota: int) -> dict[str, int]:
    """Split `quota` over groups as evenly as their sizes allow (water-filling, deterministic)."""
    share: dict[str, int] = {}
    remaining = quota
    groups = sorted(available, key=lambda g: (available[g], g))
    for position, group in enumerate(groups):
        left = len(groups) - position
        share[group] = min(available[group], -(-remaining // left))  # ceil: the total is always met
        remaining -= share[group]
    return share


def capped_total(available: dict[str, int], quota: int, max_share: float) -> int:
    """The largest total up to `quota` whose even split gives no group more than `max_share` of it (so no
    constant answer scores more), or 0 when even a small subset cannot be that even."""
    for total in range(min(quota, sum(available.values())), 0, -1):
        if max(allocate(available, total).values()) <= max_share * total:
            return total
    return 0


def select(ids: Sequence[str], groups: Sequence[str], patients: Sequence[str], scores: Sequence[float],
           quota: int, seed: int, avoid: Sequence[bool] | None = None, max_share: float | None = None
           ) -> tuple[list[str], dict[str, int]]:
    """Choose up to `quota` ids; returns them (in input order) and how many each group got. Ids flagged in
    `avoid` are taken only when their group has nothing else left; with `max_share`, the subset is cut to
    the largest size at which no group holds more than that share."""
    avoid = avoid if avoid is not None else [False] * len(ids)
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    available = {g: len(m) for g, m in members.items()}
    if max_share is not None:
        quota = capped_total(available, quota, max_share)
    share = allocate(available, quota)
    chosen: list[int] = []
    for group, indices in members.items():
        chosen.extend(_best(indices, ids, patients, scores, seed, avoid)[: share[group]])
    return [ids[i] for i in sorted(chosen)], share


def _best(indices: list[int], ids: Sequence[str], patients: Sequence[str], scores: Sequence[float],
          seed: int, avoid: Sequence[bool]) -> list[int]:
    """Indices best first: not avoided, then by quality, each patient's first item before anyone's second."""
    ranked = sorted(indices, key=lambda i: (-scores[i], tiebreak(ids[i], seed)))
    seen: defaultdict[str, int] = defaultdict(int)
    turn = {}
    for i in ranked:
        turn[i] = seen[patients[i]]
        seen[patients[i]] += 1
    return sorted(ranked, key=lambda i: (avoid[i], turn[i]))  # stable: quality order kept within each turn


def tiebreak(item_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()
