"""The answer-extraction rules, specified as data: one JSON case per reply (STYLE.md).

Each case carries `hand`, the letters a careful human reads in the reply, and `expected`, what the rules
must return. They differ only where the rules refuse to guess (`expected` null): the extractor may miss an
answer a reader would see, but it must never read a different one. The cases also run through the
lighteval metric, with the reply as the list most backends store and as the bare string the VLM backend
stores: both must score the same.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.requests import Doc

from evaluation.extract import answer_part, extract_letters
from evaluation.offline import make_lighteval_offline_safe

CASES = json.loads((Path(__file__).parent / "cases" / "extraction_cases.json").read_text(encoding="utf-8"))
STYLES = ("format", "gpt-4o", "qwen2.5-vl", "llava", "medgemma", "reasoning", "chinese")


@pytest.mark.parametrize("case", CASES, ids=[f"{case['style']}: {case['why']}" for case in CASES])
def test_extraction_case(case):
    assert extract_letters(case["output"], case["options"], multi=case["multi"]) == case["expected"]


def test_cases_cover_every_style_and_refuse_rather_than_misread():
    assert len(CASES) >= 250
    counts = Counter(case["style"] for case in CASES)
    assert set(counts) == set(STYLES) and min(counts.values()) >= 20, counts
    assert len({(case["output"], case["multi"]) for case in CASES}) == len(CASES), "duplicate cases"
    for case in CASES:
        assert case["expected"] == case["hand"] or case["expected"] is None, case["why"]


def scored(case: dict, reply) -> dict[str, float]:
    make_lighteval_offline_safe()
    from evaluation.spinebench_tasks import SpineBenchScore

    multi = case["multi"]
    gold = case["hand"] or ["A"]
    specific = {"task": "localization" if multi else "diagnosis", "options": case["options"], "answer": gold}
    doc = Doc(query="(prompt)", choices=list("ABCDE"), gold_index=[0], specific=specific)
    return SpineBenchScore().compute(doc, ModelResponse(text=reply, text_post_processed=list(reply)))


@pytest.mark.parametrize("case", CASES, ids=[f"{case['style']}: {case['why']}" for case in CASES])
def test_lighteval_scores_list_and_string_replies_alike(case):
    as_list, as_string = scored(case, [case["output"]]), scored(case, case["output"])
    assert as_list == as_string
    suffix = "loc" if case["multi"] else "dis"
    assert as_list[f"parse_fail_{suffix}"] == float(case["expected"] is None)
    right = case["expected"] is not None and case["expected"] == case["hand"]
    assert as_list[f"acc_{suffix}"] == float(right)


@pytest.mark.parametrize(
    "reply, answer",
    [
        ("<think>(A)</think>\nB", "\n\nB"),  # a closed block leaves a line break: `</think>My final ...`
        ("(A) is tempting.\n</think>\nB", "\nB"),
        ("B\n<think>(A)", "B\n"),
        ("【B】：Ｃ、D", "[B]:C,D"),
    ],
)
def test_answer_part(reply, answer):
    assert answer_part(reply) == answer
