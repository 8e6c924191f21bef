"""The answer-extraction rules, specified as data: one JSON case per tricky reply (STYLE.md)."""

import json
from pathlib import Path

import pytest

from evaluation.extract import extract_letters

CASES = json.loads((Path(__file__).parent / "cases" / "extraction_cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[case["why"] for case in CASES])
def test_extraction_case(case):
    assert extract_letters(case["output"], case["options"], multi=case["multi"]) == case["expected"]
