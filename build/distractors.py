"""Hard-negative options: the diseases whose images look most like the item's image.

As in the paper: a library of up to N images per disease (seeded), the cosine similarity of each item's
image to every library image, aggregated per disease (mean or max), and the most similar diseases other than
the truth become the distractors; Healthy is always an option. The `clinical` profile also never offers a
disease the image shows elsewhere (`present`) and prefers diseases seen in the same modality and region, so
an option cannot be ruled out without looking at the lesion.

The paper's rule gives nearly the same options to every image of a class, so the option set tells the gold
(build/audit.py measures it). With `option_sets: balanced` the distractors are instead chosen among the
image's `candidates` nearest diseases so that each option set is used with each of its members as the gold
as evenly as the data allow (a greedy balancer, like the one that balances gold letters): still hard
negatives, but no longer a fingerprint of the truth.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from build.options import seeded_rng
from spinebench import DISEASES, HEALTHY

CHUNK = 512  # item rows per similarity block: bounds memory at CHUNK x library size (~10 MB at 2,400)


def pick_library(diseases: Sequence[str], per_disease: int, seed: int) -> dict[str, np.ndarray]:
    """Indices (into the image list) of up to `per_disease` seeded random images per disease."""
    library: dict[str, np.ndarray] = {}
    for disease in DISEASES:
        members = np.flatnonzero(np.asarray(diseases) == disease)
        if len(members) > per_disease:
            members = np.sort(seeded_rng(seed, "library", disease).choice(members, per_disease, replace=False))
        if len(members):
            library[disease] = members
    return library


def library_rows(library: Mapping[str, np.ndarray]) -> np.ndarray:
    """Every library image's row, disease after disease: the order `disease_similarity` wants their vectors in."""
    return np.concatenate(list(library.values())) if library else np.zeros(0, dtype=int)


def disease_similarity(vectors: np.ndarray, rows: np.ndarray, library: Mapping[str, np.ndarray],
                       library_vectors: np.ndarray, how: str) -> np.ndarray:
    """(len(rows) x DISEASES) similarity of the images at `rows` (their vectors: `vectors`) to each disease's
    library, whose vectors `library_vectors` are in `library_rows(library)` order; NaN where no library.

    Works on any block of images, so a caller never needs every vector at once. An image never counts its
    own library entry. Computed in float64 and rounded to 6 decimals so the ranking does not depend on BLAS
    block order.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"similarity must be 'mean' or 'max', not {how!r}")
    rows = np.asarray(rows)
    out = np.full((len(rows), len(DISEASES)), np.nan)
    lib_index = library_rows(library)
    lib_vectors = np.asarray(library_vectors, dtype=np.float64)
    bounds = np.cumsum([0] + [len(m) for m in library.values()])
    columns = [DISEASES.index(d) for d in library]
    reduce = np.nanmean if how == "mean" else np.nanmax
    for start in range(0, len(rows), CHUNK):
        block = slice(start, start + CHUNK)
        sims = vectors[block].astype(np.float64) @ lib_vectors.T
        sims[rows[block, None] == lib_index[None, :]] = np.nan
        for column, lo, hi in zip(columns, bounds[:-1], bounds[1:]):
            part = sims[:, lo:hi]
            valid = ~np.isnan(part).all(axis=1)
            out[np.flatnonzero(valid) + start, column] = reduce(part[valid], axis=1)
    return np.round(out, 6)


@dataclass(frozen=True)
class Context:
    """Where each disease occurs in the built data, for the modality/region rules."""

    modalities: Mapping[str, frozenset[str]]
    regions: Mapping[str, frozenset[str]]

    @classmethod
    def from_images(cls, diseases: Sequence[str], modalities: Sequence[str], regions: Sequence[str]) -> Context:
        mods: dict[str, set[str]] = {}
        regs: dict[str, set[str]] = {}
        for disease, modality, region in zip(diseases, modalities, regions):
            mods.setdefault(disease, set()).add(modality)
            regs.setdefault(disease, set()).add(region)
        return cls({d: frozenset(m) for d, m in mods.items()}, {d: frozenset(r) for d, r in regs.items()})

    def ruled_out_by_modality(self, disease: str, modality: str) -> bool:
        """True when the benchmark never shows `disease` in this modality: the option needs no look."""
        return disease != HEALTHY and disease in self.modalities and modality not in self.modalities[disease]

    def compatible(self, disease: str, modality: str, region: str) -> bool:
        if self.ruled_out_by_modality(disease, modality):
            return False
        regions = self.regions.get(disease, frozenset())
        return region == "unknown" or not regions or region in regions or "unknown" in regions


def wanted(truth: str) -> int:
    """Distractors per SDD item: five options with the truth and Healthy."""
    return 4 if truth == HEALTHY else 3


def choose(truth: str, present: Sequence[str], scores: np.ndarray, modality: str, region: str,
           context: Context, exclude_present: bool, modality_aware: bool) -> list[str]:
    """The distractor diseases for one SDD item (3, or 4 when the truth is Healthy), best first."""
    return ranked(truth, present, scores, modality, region, context, exclude_present, modality_aware)[:wanted(truth)]


def ranked(truth: str, present: Sequence[str], scores: np.ndarray, modality: str, region: str,
           context: Context, exclude_present: bool, modality_aware: bool) -> list[str]:
    """Every possible distractor, best first: compatible before ruled-out (when modality-aware), then by
    similarity, diseases without a library last."""
    candidates = [d for d in DISEASES if d not in (truth, HEALTHY) and not (exclude_present and d in present)]

    def rank(disease: str) -> tuple:
        score = scores[DISEASES.index(disease)]
        incompatible = modality_aware and not context.compatible(disease, modality, region)
        return (incompatible, np.isnan(score), -np.nan_to_num(score, nan=0.0), DISEASES.index(disease))

    return sorted(candidates, key=rank)


def similarity_ranks(truth: str, chosen: Sequence[str], scores: np.ndarray) -> list[int]:
    """Rank (1 = most similar) of each chosen distractor among all diseases but the truth and Healthy, by
    similarity alone: how hard the offered negatives are."""
    others = [d for d in DISEASES if d not in (truth, HEALTHY)]
    order = sorted(others, key=lambda d: (-np.nan_to_num(scores[DISEASES.index(d)], nan=-np.inf),
                                          DISEASES.index(d)))
    return [order.index(d) + 1 for d in chosen]


@dataclass
class SetBalancer:
    """Chooses, among the option sets an image's nearest `candidates` allow, the one whose members have been
    its gold most evenly so far (ties: the nearest distractors), and remembers the choice.

    The diseases of the image's own source (`own`: what its images can be labelled) come first: offered
    all when they fit, so a set never tells the gold by which of its family's diseases it leaves out.
    """

    candidates: int
    gold: defaultdict[frozenset, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def choose(self, truth: str, ranked_distractors: Sequence[str], own: frozenset[str] = frozenset()
               ) -> list[str]:
        need = wanted(truth)
        family = [d for d in ranked_distractors if d in own]
        fixed = family if len(family) < need else []
        rest = [d for d in ranked_distractors if d not in fixed and (fixed or len(family) < need or d in own)]
        pool = rest[: max(need - len(fixed), self.candidates)]
        best, best_cost = None, None
        for combo in combinations(range(len(pool)), need - len(fixed)):  # nearest combinations first
            members = frozenset([truth, HEALTHY, *fixed, *(pool[i] for i in combo)])
            seen = self.gold[members]
            cost = (seen[truth] - min(seen[m] for m in members), sum(combo))
            if best_cost is None or cost < best_cost:
                best, best_cost = combo, cost
        chosen = [*fixed, *(pool[i] for i in best)]
        self.gold[frozenset([truth, HEALTHY, *chosen])][truth] += 1
        return chosen
