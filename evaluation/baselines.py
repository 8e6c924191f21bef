"""Deterministic baseline "models" for `lighteval custom NAME evaluation/baselines.py TASKS ...`.

lighteval instantiates the first class in this file that subclasses LightevalModel, so there is exactly
one, and the NAME argument picks the strategy:

- `oracle`: the gold letters from Doc.specific (for tests: every task must score exactly 1.0);
- `always-a`: always option A;
- `always-healthy`: the letter of the `Healthy` option, else A;
- `random` or `random-SEED`: a seeded random letter (SDD) or non-empty letter set (SLL), drawn per
  prompt so that the answer does not depend on batching or sample order.

Each answer is written as the prompt's fixed final line, so the whole parsing path is exercised.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lighteval loads this file by path; our modules live beside it
    sys.path.insert(0, str(ROOT))

from lighteval.models.abstract_model import LightevalModel  # noqa: E402
from lighteval.models.custom.custom_model import CustomModelConfig  # noqa: E402
from lighteval.models.model_output import ModelResponse  # noqa: E402
from lighteval.tasks.requests import Doc  # noqa: E402
from lighteval.utils.cache_management import SampleCache  # noqa: E402

from evaluation.generation_only import GenerationOnly  # noqa: E402
from evaluation.prompts import final_line  # noqa: E402
from spinebench import HEALTHY, LETTERS  # noqa: E402

Strategy = Callable[[Doc], list[str]]


def oracle(doc: Doc) -> list[str]:
    return list(doc.specific["answer"])


def always_a(doc: Doc) -> list[str]:
    return ["A"]


def always_healthy(doc: Doc) -> list[str]:
    options = doc.specific["options"]
    return [LETTERS[options.index(HEALTHY)]] if HEALTHY in options else ["A"]


def seeded_random(seed: int) -> Strategy:
    def answer(doc: Doc) -> list[str]:
        rng = random.Random(f"{seed}:{doc.query}")
        letters = LETTERS[: len(doc.specific["options"])]
        if doc.specific["task"] != "localization":
            return [rng.choice(letters)]
        subsets = [list(c) for size in range(1, len(letters) + 1) for c in combinations(letters, size)]
        return rng.choice(subsets)

    return answer


def strategy_for(name: str) -> Strategy:
    fixed = {"oracle": oracle, "always-a": always_a, "always-healthy": always_healthy}
    if name in fixed:
        return fixed[name]
    if name == "random" or name.startswith("random-"):
        return seeded_random(int(name.partition("-")[2] or 0))
    raise ValueError(f"unknown baseline {name!r}: oracle, always-a, always-healthy, random or random-SEED")


class BaselineModel(GenerationOnly, LightevalModel):
    """Answers every Doc with the strategy named by the model name; generation only."""

    def __init__(self, config: CustomModelConfig):
        self.config = config
        self.strategy = strategy_for(config.model_name)
        self._cache = SampleCache(config)  # the pipeline hands every model its task registry through it

    def greedy_until(self, docs: list[Doc]) -> list[ModelResponse]:
        return [
            ModelResponse(input=doc.query, text=[final_line(doc.specific["task"], self.strategy(doc))])
            for doc in docs
        ]
