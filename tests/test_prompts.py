"""The prompts: the paper's structure in its order, the exact final-line phrases, the no-image wording.

The snapshots in tests/cases/prompts/ were read by hand against the paper's prompt structure
(docs/PAPER.md, "Evaluation protocol", items 1-8); a change to a prompt must change them on purpose.
"""

import json
from pathlib import Path

import pytest
import yaml

from evaluation.extract import extract_letters
from evaluation.prompts import PROMPTS, WITHHELD, build_prompt, final_line

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "tests" / "cases" / "prompts"
ROWS = json.loads((SNAPSHOTS / "rows.json").read_text())
QUESTIONS = yaml.safe_load((ROOT / "configs" / "questions.yaml").read_text())
VARIANTS = [(prompt, task, text_only) for prompt in PROMPTS for task in ROWS for text_only in (False, True)]


@pytest.mark.parametrize("prompt, task, text_only", VARIANTS)
def test_prompt_matches_its_reviewed_snapshot(prompt, task, text_only):
    name = f"{prompt}_{task}{'_text_only' if text_only else ''}.txt"
    assert build_prompt(ROWS[task], text_only, prompt) + "\n" == (SNAPSHOTS / name).read_text()


@pytest.mark.parametrize("task", ROWS)
def test_paper_prompt_keeps_the_papers_order(task):
    text = build_prompt(ROWS[task])
    parts = [
        "simulated medical scenario",  # 1. the scenario
        "board-certified spine surgeon",  # 2. the persona
        "single most accurate answer" if task == "diagnosis" else "all appropriate answers",  # 3. the task
        "Explain the reasoning",  # 4. stay in role, reasoning, no AI / physician talk
        f"Question: {ROWS[task]['question']}",  # 5. the question
        "Options: [" + ", ".join(f"{l}: {o}" for l, o in zip("ABCDE", ROWS[task]["options"])) + "]",  # 6.
        "My final option" + ("s: [X, Y, ...]" if task == "localization" else ": [X]"),  # 7. the final phrase
    ]
    positions = [text.index(part) for part in parts]
    assert positions == sorted(positions)
    assert text.splitlines()[-1] == parts[-1]
    assert "follows it" in text  # 8. the image comes after the text
    if task == "localization":
        assert "[A, C]" in text


@pytest.mark.parametrize("prompt", PROMPTS)
def test_the_final_line_is_what_the_extractor_reads(prompt):
    for task, row in ROWS.items():
        multi = task == "localization"
        assert extract_letters(build_prompt(row, prompt=prompt), row["options"], multi) is None  # an echo
        for gold in (["A"], ["C"]) + ((["B", "E"], ["A", "B", "C", "D", "E"]) if multi else ()):
            assert extract_letters(f"Reasoning.\n{final_line(task, gold)}", row["options"], multi) == gold


@pytest.mark.parametrize("prompt", PROMPTS)
def test_no_image_wording_is_consistent_for_every_question(prompt):
    for task, questions in QUESTIONS.items():
        for question in questions:
            row = {**ROWS[task], "question": question["text"]}
            text = build_prompt(row, text_only=True, prompt=prompt)
            assert WITHHELD in text and text.count("image") == 1 + question["text"].count("image"), text
            assert "attached" not in text and "follows it" not in text and "No image is available" not in text
