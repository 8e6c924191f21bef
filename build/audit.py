"""What a model gets without the image: the validity audit every `items` run performs.

A benchmark whose answers can be read off the option texts, the letters or the question wording measures
priors, not image reading. The audit scores attacks that never see the pixels on the built items:

- text-only, learned: trained on some patients, tested on the others (patient-disjoint folds, several
  seeds): the option-set prior (the gold most often seen with exactly this set of options, backing off to
  how often each option is gold when offered) and a conditional-logit model over option texts, co-offered
  texts, letter positions and question wording;
- shallow, knowing only what the image's metadata says: the lone-family option (the one option whose
  disease comes from sources none of the other options share), the modality/region/sequence guess (the
  offered option most often gold for that modality, region and view in the training folds), always-Healthy;
- SLL constant answers: the best fixed level set and the per-level majority set (both chosen on the scored
  items themselves, an upper bound), the text-only question prior (cross-validated), the share of each
  gold set;
- the number of distinct SDD option sets and the largest P(gold | option set) among sets seen often enough.

Scores are expected accuracies (ties split evenly), so a design with no leak scores chance exactly in
expectation and every figure is deterministic given the seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy.optimize import minimize

from spinebench import DISEASES, HEALTHY, LETTERS, LEVELS

FOLDS = 2  # train on half the patients, test on the other half (and the reverse)
SEEDS = 3
MIN_SET_SUPPORT = 20  # an option set must be seen this often before its P(gold | set) is reported
L2 = 1.0  # ridge penalty of the text model (on the summed log-likelihood)
CONFIGS = ("full", "diagnosis", "localization", "mini")
SDD_ATTACKS = {  # key -> label, in table order
    "chance": "chance (1 of 5)",
    "option_set_prior": "text-only: option-set prior",
    "text_model": "text-only: learned model (options, letters, wording)",
    "lone_family": "lone-family option",
    "sequence_only": "modality/region/sequence guess",
    "always_healthy": "always Healthy",
}
SLL_ATTACKS = {
    "best_fixed_set": "best fixed level set",
    "per_level_majority": "per-level majority",
    "question_prior": "text-only: wording -> most common set",
}


def audit(items: Sequence[dict[str, Any]], seed: int, folds: int = FOLDS, seeds: int = SEEDS,
          distractor_rank: float | None = None) -> dict[str, Any]:
    """The audit of the active (not rejected) items, per configuration and task; JSON-ready."""
    sdd = [i for i in items if i["task"] == "diagnosis"]
    sll = [i for i in items if i["task"] == "localization"]
    sdd_scores = _sdd_predictions(sdd, seed, folds, seeds)
    sll_scores = _sll_predictions(sll, seed, folds, seeds)
    out: dict[str, Any] = {"seed": seed, "folds": folds, "seeds": seeds,
                           "mean_distractor_similarity_rank": distractor_rank, "configs": {}}
    for name in CONFIGS:
        keep = (lambda i: i["mini"]) if name == "mini" else (lambda i: True)
        entry: dict[str, Any] = {}
        if name != "localization":
            rows = [n for n, i in enumerate(sdd) if keep(i)]
            entry["diagnosis"] = _sdd_summary([sdd[n] for n in rows], {k: v[:, rows] for k, v in sdd_scores.items()})
        if name != "diagnosis":
            rows = [n for n, i in enumerate(sll) if keep(i)]
            entry["localization"] = _sll_summary([sll[n] for n in rows], sll_scores["question_prior"][:, rows])
        out["configs"][name] = entry
    out["headline"] = headline(out)
    return out


def headline(result: dict[str, Any]) -> dict[str, float | None]:
    """The figures the card's first paragraph quotes: the strongest attacks on full and mini."""
    def best(config: str, task: str, keys: Iterable[str]) -> float | None:
        figures = result["configs"][config].get(task) or {}
        values = [figures[k] for k in keys if figures.get(k) is not None]
        return max(values) if values else None

    text = ("option_set_prior", "text_model")
    return {
        "text_only_full": best("full", "diagnosis", text),
        "text_only_mini": best("mini", "diagnosis", text),
        "shallow_mini": best("mini", "diagnosis", ("lone_family", "sequence_only", "always_healthy")),
        "constant_sll_mini": best("mini", "localization", ("best_fixed_set", "per_level_majority")),
    }


# Folds.


def patient_folds(items: Sequence[dict[str, Any]], seed: int, run: int, folds: int) -> np.ndarray:
    """Fold of each item: a seeded hash of its source and patient, so a patient is never on both sides."""
    def fold(item: dict) -> int:
        key = f"{seed}:{run}:{item['source']}/{item['patient_id']}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") % folds
    return np.array([fold(i) for i in items], dtype=int)


def _cross_validated(items: Sequence[dict], seed: int, folds: int, seeds: int, fit, score) -> np.ndarray:
    """(seeds x items) expected correctness of each item when scored by a model fitted on the other folds.

    `fit(train items) -> model`; `score(model, test items) -> expected correctness of each`."""
    out = np.zeros((seeds, len(items)))
    for run in range(seeds):
        assigned = patient_folds(items, seed, run, folds)
        for fold in range(folds):
            train = [i for i, f in zip(items, assigned) if f != fold]
            test = np.flatnonzero(assigned == fold)
            if not len(test):
                continue
            out[run, test] = score(fit(train), [items[t] for t in test])
    return out


def _pick(values: dict[str, float], item: dict) -> float:
    """Expected correctness of picking the option(s) of highest value, ties split evenly."""
    top = max(values.values())
    tied = [o for o, v in values.items() if v == top]
    return sum(o in item["answer_text"] for o in tied) / len(tied)


# Diagnosis attacks.


def _sdd_predictions(items: Sequence[dict], seed: int, folds: int, seeds: int) -> dict[str, np.ndarray]:
    families = source_families(items)
    fixed = {
        "chance": [1 / len(i["options"]) for i in items],
        "lone_family": [lone_family(i, families) for i in items],
        "always_healthy": [float(HEALTHY in i["answer_text"]) if HEALTHY in i["options"] else
                           1 / len(i["options"]) for i in items],
    }
    out = {k: np.tile(np.asarray(v, dtype=float), (seeds, 1)) for k, v in fixed.items()}
    out["option_set_prior"] = _cross_validated(items, seed, folds, seeds, fit_option_set_prior, score_option_set_prior)
    out["text_model"] = _cross_validated(items, seed, folds, seeds, TextModel.fit, TextModel.score)
    out["sequence_only"] = _cross_validated(items, seed, folds, seeds, fit_sequence_guess, score_sequence_guess)
    return out


def source_families(items: Sequence[dict]) -> dict[str, frozenset[str]]:
    """Disease -> the sources it is gold in: what anyone knows about where a disease is seen."""
    found: dict[str, set[str]] = defaultdict(set)
    for item in items:
        found[item["disease"]].add(item["source"])
    return {d: frozenset(s) for d, s in found.items()}


def lone_family(item: dict, families: dict[str, frozenset[str]]) -> float:
    """Pick the one non-Healthy option sharing no source with the other options; chance when there is none
    (or several)."""
    diseases = [o for o in item["options"] if o != HEALTHY]
    lone = [o for o in diseases
            if not any(families.get(o, frozenset()) & families.get(other, frozenset())
                       for other in diseases if other != o)]
    if len(lone) != 1:
        return 1 / len(item["options"])
    return float(lone[0] in item["answer_text"])


def fit_option_set_prior(train: Sequence[dict]) -> tuple[dict, Counter, Counter]:
    by_set: dict[frozenset, Counter] = defaultdict(Counter)
    gold, offered = Counter(), Counter()
    for item in train:
        by_set[frozenset(item["options"])].update(item["answer_text"])
        gold.update(item["answer_text"])
        offered.update(item["options"])
    return by_set, gold, offered


def score_option_set_prior(model: tuple[dict, Counter, Counter], items: Sequence[dict]) -> list[float]:
    return [_option_set_prior(model, item) for item in items]


def _option_set_prior(model: tuple[dict, Counter, Counter], item: dict) -> float:
    by_set, gold, offered = model
    seen = by_set.get(frozenset(item["options"]))
    if seen:
        return _pick({o: seen[o] for o in item["options"]}, item)
    return _pick({o: gold[o] / offered[o] if offered[o] else 0.0 for o in item["options"]}, item)


def _cell(item: dict) -> tuple[str, str, str]:
    return item["modality"], item["region"], item["view"]


def fit_sequence_guess(train: Sequence[dict]) -> tuple[dict, Counter]:
    cells: dict[tuple, Counter] = defaultdict(Counter)
    overall = Counter()
    for item in train:
        cells[_cell(item)].update(item["answer_text"])
        overall.update(item["answer_text"])
    return cells, overall


def score_sequence_guess(model: tuple[dict, Counter], items: Sequence[dict]) -> list[float]:
    cells, overall = model
    return [_pick({o: (cells.get(_cell(i)) or overall)[o] for o in i["options"]}, i) for i in items]


class TextModel:
    """Conditional logit over an item's five options, from text alone.

    Each option is described by sparse indicator features: its text, its letter, its text at that letter,
    its text with the question wording, and its text with each co-offered text. The weights maximise the
    penalised likelihood of the gold option (L-BFGS); the prediction is the option of highest score.
    """

    def __init__(self, weights: np.ndarray, questions: dict[str, int]) -> None:
        self.weights, self.questions = weights, questions

    @staticmethod
    def features(items: Sequence[dict], questions: dict[str, int]) -> np.ndarray:
        """(items x 5 x 8) feature indices."""
        d, l, q = len(DISEASES), len(LETTERS), len(questions) + 1
        offsets = np.cumsum([0, d, l, d * l, d * q])  # text, letter, text x letter, text x question, pairs
        rows = []
        for item in items:
            texts = [DISEASES.index(o) for o in item["options"]]
            question = questions.get(item["question_id"], len(questions))
            per_option = []
            for position, text in enumerate(texts):
                others = [t for t in texts if t != text]
                per_option.append([offsets[0] + text, offsets[1] + position, offsets[2] + text * l + position,
                                   offsets[3] + text * q + question,
                                   *(offsets[4] + text * d + other for other in others)])
            rows.append(per_option)
        return np.asarray(rows, dtype=np.int64)

    @staticmethod
    def size(questions: dict[str, int]) -> int:
        d, l, q = len(DISEASES), len(LETTERS), len(questions) + 1
        return d + l + d * l + d * q + d * d

    @classmethod
    def fit(cls, train: Sequence[dict]) -> TextModel:
        questions = {name: n for n, name in enumerate(sorted({i["question_id"] for i in train}))}
        index = cls.features(train, questions)
        gold = np.array([[o in i["answer_text"] for o in i["options"]] for i in train], dtype=float)
        gold /= gold.sum(axis=1, keepdims=True)
        size = cls.size(questions)

        def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
            scores = weights[index].sum(axis=2)
            scores -= scores.max(axis=1, keepdims=True)
            log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
            residual = np.exp(log_p) - gold
            grad = np.bincount(index.reshape(-1), np.repeat(residual.reshape(-1), index.shape[2]), minlength=size)
            return float(-(gold * log_p).sum() + L2 * weights @ weights), grad + 2 * L2 * weights

        result = minimize(loss, np.zeros(size), jac=True, method="L-BFGS-B", options={"maxiter": 200})
        return cls(result.x, questions)

    def score(self, items: Sequence[dict]) -> list[float]:
        scores = np.round(self.weights[self.features(items, self.questions)].sum(axis=2), 9)
        return [_pick(dict(zip(item["options"], row)), item) for item, row in zip(items, scores.tolist())]


def _sdd_summary(items: Sequence[dict], scores: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {"items": len(items)}
    for key in SDD_ATTACKS:
        out[key] = round(float(scores[key].mean()), 4) if items else None
    sets: dict[frozenset, Counter] = defaultdict(Counter)
    for item in items:
        sets[frozenset(item["options"])].update(item["answer_text"])
    supported = [c for c in sets.values() if sum(c.values()) >= MIN_SET_SUPPORT]
    out["distinct_option_sets"] = len(sets)
    out["max_p_gold_given_set"] = (round(max(max(c.values()) / sum(c.values()) for c in supported), 4)
                                   if supported else None)
    out["gold_shares"] = _shares(Counter(i["disease"] for i in items), len(items))
    return out


# Localization attacks.


def _levels(item: dict) -> frozenset[str]:
    return frozenset(item["answer_text"])


def _sll_predictions(items: Sequence[dict], seed: int, folds: int, seeds: int) -> dict[str, np.ndarray]:
    def fit(train: Sequence[dict]) -> tuple[dict, Counter]:
        by_question: dict[str, Counter] = defaultdict(Counter)
        overall = Counter(_levels(i) for i in train)
        for item in train:
            by_question[item["question_id"]][_levels(item)] += 1
        return by_question, overall

    def score(model: tuple[dict, Counter], items: Sequence[dict]) -> list[float]:
        return [_question_prior(model, item) for item in items]

    return {"question_prior": _cross_validated(items, seed, folds, seeds, fit, score)}


def _question_prior(model: tuple[dict, Counter], item: dict) -> float:
    by_question, overall = model
    counts = by_question.get(item["question_id"]) or overall
    top = max(counts.values())
    tied = [s for s, n in counts.items() if n == top]
    return sum(s == _levels(item) for s in tied) / len(tied)


ALL_SETS = [frozenset(c) for k in range(1, len(LEVELS) + 1) for c in combinations(LEVELS, k)]


def _sll_summary(items: Sequence[dict], question_prior: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"items": len(items)}
    if not items:
        return {**out, **{k: None for k in SLL_ATTACKS}, "gold_sets": []}
    golds = Counter(_levels(i) for i in items)
    best = max(ALL_SETS, key=lambda s: (golds[s], -len(s), sorted(s)))  # deterministic among ties
    included = Counter(level for i in items for level in _levels(i))
    majority = frozenset(level for level in LEVELS if included[level] * 2 > len(items))
    out["best_fixed_set"] = round(golds[best] / len(items), 4)
    out["best_fixed_levels"] = [level for level in LEVELS if level in best]
    out["per_level_majority"] = round(golds[majority] / len(items), 4)
    out["per_level_majority_levels"] = [level for level in LEVELS if level in majority]
    out["question_prior"] = round(float(question_prior.mean()), 4)
    out["gold_sets"] = [{"levels": [lv for lv in LEVELS if lv in s], "share": round(n / len(items), 4)}
                        for s, n in sorted(golds.items(), key=lambda kv: (-kv[1], sorted(kv[0])))[:5]]
    return out


def _shares(counter: Counter, total: int) -> dict[str, float]:
    return {k: round(v / total, 4) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))}


# Rendering (card and evaluation report).


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table_rows(result: dict[str, Any], config: str) -> list[list[str]]:
    """[attack, SDD %, SLL %] rows of one configuration."""
    entry = result["configs"][config]
    sdd, sll = entry.get("diagnosis"), entry.get("localization")
    rows = [[label, _percent(sdd[key]), "-"] for key, label in SDD_ATTACKS.items()] if sdd else []
    if sll:
        for key, label in SLL_ATTACKS.items():
            levels = sll.get(f"{key}_levels")
            rows.append([label + (f" ({' '.join(levels) or 'none'})" if levels is not None else ""), "-",
                         _percent(sll[key])])
    return rows


def markdown(result: dict[str, Any]) -> str:
    """One table per configuration, then the option-set and distractor figures."""
    parts = []
    for config in CONFIGS:
        entry = result["configs"][config]
        n = ", ".join(f"{entry[t]['items']} {t}" for t in ("diagnosis", "localization") if t in entry)
        lines = ["| attack (no image) | SDD acc % | SLL exact % |", "|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(result, config)]
        sdd, sll = entry.get("diagnosis"), entry.get("localization")
        notes = []
        if sdd:
            notes.append(f"{sdd['distinct_option_sets']} distinct option sets; largest P(gold | set) among "
                         f"sets seen {MIN_SET_SUPPORT}+ times: {_percent(sdd['max_p_gold_given_set'])}%")
        if sll and sll["gold_sets"]:
            notes.append("most common SLL gold sets: " + ", ".join(
                f"{' '.join(g['levels'])} {_percent(g['share'])}%" for g in sll["gold_sets"]))
        parts.append(f"**{config}** ({n})\n\n" + "\n".join(lines) + "\n\n" + "; ".join(notes) + ".")
    rank = result.get("mean_distractor_similarity_rank")
    parts.append(f"Learned attacks: {result['folds']} patient-disjoint folds x {result['seeds']} seeds (seed "
                 f"{result['seed']}); constant SLL answers are chosen on the scored items themselves."
                 + (f" Mean similarity rank of the offered distractors among the candidate diseases: {rank:.2f} "
                    "(1 = the most similar)." if rank is not None else ""))
    return "\n\n".join(parts)


def headline_text(result: dict[str, Any]) -> str:
    h = result["headline"]
    return (f"without the image, the strongest text-only attack scores {_percent(h['text_only_full'])}% on "
            f"full SDD and {_percent(h['text_only_mini'])}% on mini SDD (chance 20%), the best shallow "
            f"heuristic {_percent(h['shallow_mini'])}% on mini SDD, and the best constant SLL answer "
            f"{_percent(h['constant_sll_mini'])}% on mini SLL")
