"""Review decisions: format, latest-wins, rejection, correction, and errors that name the line."""

import json

import pytest

from build.decisions import DecisionError, apply, load

ITEMS = {
    "a-sdd": {"id": "a-sdd", "task": "diagnosis", "options": ["Osteophytes", "Healthy", "Vertebral collapse",
                                                              "Spondylolisthesis", "Disc space narrowing"],
              "answer": ["A"], "answer_text": ["Osteophytes"], "disease": "Osteophytes", "levels": [],
              "question": "q"},
    "b-sll": {"id": "b-sll", "task": "localization", "options": ["L3/L4", "L1/L2", "L5/S1", "L2/L3", "L4/L5"],
              "answer": ["A", "E"], "answer_text": ["L3/L4", "L4/L5"], "disease": "Spinal canal stenosis",
              "levels": ["L3/L4", "L4/L5"], "question": "q"},
    "c-sdd": {"id": "c-sdd", "task": "diagnosis", "options": [], "answer": [], "answer_text": [],
              "disease": "Healthy", "levels": [], "question": "q"},
}


def write(tmp_path, *lines):
    path = tmp_path / "decisions.jsonl"
    path.write_text("\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines) + "\n")
    return path


def decision(item, kind, **extra):
    return {"id": item, "decision": kind, "reviewer": "ana", "time": "2026-11-28T10:00:00Z", **extra}


def test_reject_marks_and_correct_recomputes_gold_letters(tmp_path):
    path = write(tmp_path, decision("c-sdd", "reject"),
                 decision("a-sdd", "correct", fields={"disease": "Vertebral collapse"}),
                 decision("b-sll", "correct", fields={"levels": ["L5/S1", "L1/L2"]}))
    out = {item["id"]: item for item in apply(ITEMS.values(), load(path, ITEMS))}
    assert set(out) == set(ITEMS) and out["c-sdd"]["review"] == "reject"
    assert out["a-sdd"]["answer"] == ["C"] and out["a-sdd"]["answer_text"] == ["Vertebral collapse"]
    assert out["b-sll"]["answer"] == ["B", "C"] and out["b-sll"]["levels"] == ["L1/L2", "L5/S1"]
    assert out["a-sdd"]["review"] == "correct"
    assert ITEMS["a-sdd"]["answer"] == ["A"]  # the input is not modified


def test_latest_decision_wins(tmp_path):
    path = write(tmp_path, decision("c-sdd", "reject"), "", decision("c-sdd", "accept"))
    out = apply(ITEMS.values(), load(path, ITEMS))
    assert [i["id"] for i in out] == ["a-sdd", "b-sll", "c-sdd"]
    assert out[2]["review"] == "accept"


@pytest.mark.parametrize("bad,message", [
    (decision("zzz", "reject"), "unknown item id 'zzz'"),
    (decision("a-sdd", "maybe"), "not one of"),
    (decision("a-sdd", "correct"), "needs fields"),
    (decision("a-sdd", "correct", fields={"disease": "Cervical kyphosis"}), "not an option"),
    (decision("b-sll", "correct", fields={"levels": ["L6/L7"]}), "non-empty subset"),
    (decision("a-sdd", "correct", fields={"options": []}), "cannot be corrected"),
    ({"id": "a-sdd", "decision": "accept"}, "missing reviewer, time"),
    ("{not json", "Expecting property name"),
])
def test_bad_lines_stop_with_file_and_line(tmp_path, bad, message):
    path = write(tmp_path, decision("a-sdd", "accept"), bad)
    with pytest.raises(DecisionError) as error:
        load(path, ITEMS)
    assert str(error.value).startswith(f"{path}:2: ")
    assert message in str(error.value)
