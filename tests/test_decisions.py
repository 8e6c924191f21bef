"""Review decisions: format, latest-wins, rejection, correction, and bad lines refused by FILE:LINE."""

import json

import pytest

from build.decisions import DecisionError, apply, dumps, load, parse, read
from build.report import StageReport

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
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else
                                (json.dumps(line) if isinstance(line, dict) else line).encode() for line in lines)
                     + b"\n")
    return path


def decision(item, kind, **extra):
    return {"id": item, "decision": kind, "reviewer": "ana", "time": "2026-11-28T10:00:00Z", **extra}


def test_reject_marks_and_correct_recomputes_gold_letters(tmp_path):
    path = write(tmp_path, decision("c-sdd", "reject"),
                 decision("a-sdd", "correct", fields={"disease": "Vertebral collapse"}),
                 decision("b-sll", "correct", fields={"levels": ["L5/S1", "L1/L2"]}))
    found, refused = read(path, ITEMS)
    out = {item["id"]: item for item in apply(ITEMS.values(), found)}
    assert refused == [] and set(out) == set(ITEMS) and out["c-sdd"]["review"] == "reject"
    assert out["a-sdd"]["answer"] == ["C"] and out["a-sdd"]["answer_text"] == ["Vertebral collapse"]
    assert out["b-sll"]["answer"] == ["B", "C"] and out["b-sll"]["levels"] == ["L1/L2", "L5/S1"]
    assert out["a-sdd"]["review"] == "correct"
    assert ITEMS["a-sdd"]["answer"] == ["A"]  # the input is not modified


def test_latest_decision_wins(tmp_path):
    path = write(tmp_path, decision("c-sdd", "reject"), "", decision("c-sdd", "accept"))
    out = apply(ITEMS.values(), read(path, ITEMS)[0])
    assert [i["id"] for i in out] == ["a-sdd", "b-sll", "c-sdd"]
    assert out[2]["review"] == "accept"


def test_a_bom_from_an_editor_and_crlf_line_ends_are_read(tmp_path):
    path = tmp_path / "decisions.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(decision("a-sdd", "flag")).encode() + b"\r\n"
                     + json.dumps(decision("b-sll", "reject")).encode() + b"\r\n")
    found, refused = read(path, ITEMS)
    assert refused == [] and {k: d.decision for k, d in found.items()} == {"a-sdd": "flag", "b-sll": "reject"}


def correction(fields: str) -> str:
    """A correction of a-sdd whose fields are given as raw JSON text (so NaN and bad escapes can be planted)."""
    return json.dumps(decision("a-sdd", "correct", fields={}))[:-len('{}}')] + fields + "}"


@pytest.mark.parametrize("bad,message", [
    (decision("zzz", "reject"), "unknown item id 'zzz'"),
    (decision("a-sdd", "maybe"), "decision: Input should be 'accept', 'reject', 'correct' or 'flag'"),
    (decision("a-sdd", "correct"), "needs fields"),
    (decision("a-sdd", "accept", fields={"disease": "Healthy"}), "fields go with a correction"),
    (decision("a-sdd", "correct", fields={"disease": "Cervical kyphosis"}), "not an option"),
    (decision("a-sdd", "correct", fields={"levels": ["L4/L5"]}), "can only correct a localization item"),
    (decision("b-sll", "correct", fields={"levels": ["L6/L7"]}), "fields.levels.0: Input should be 'L1/L2'"),
    (decision("b-sll", "correct", fields={"levels": []}), "fields.levels: List should have at least 1 item"),
    (decision("b-sll", "correct", fields={"levels": "L4/L5"}), "should be a valid list, not a string"),
    (decision("a-sdd", "correct", fields={"options": []}), "unknown key 'fields.options' (allowed: question,"),
    (decision("a-sdd", "correct", fields=["disease"]), "fields: Input should be an object, not an array"),
    (decision("a-sdd", "accept", extra=1), "unknown key 'extra' (allowed: id, decision, reviewer, time,"),
    ({"id": "a-sdd", "decision": "accept"}, "missing reviewer, time"),
    (decision("a-sdd", "accept", reviewer=" "), "reviewer: empty text"),
    (decision("a-sdd", "accept", reviewer="ana\nbob"), "reviewer: control character U+000A"),
    (decision("a-sdd", "accept", time="yesterday"), "time: Invalid isoformat string"),
    (decision("a-sdd", "accept", note=["a", "list"]), "note: Input should be a valid string, not an array"),
    (decision("a-sdd", "accept", note="n" * 2001), "note: String should have at most 2000 characters"),
    (decision("a-sdd", "correct", fields={"question": {"a": 1}}),
     "fields.question: Input should be a valid string, not an object"),
    (decision("a-sdd", "correct", fields={"question": 7}), "fields.question: Input should be a valid string"),
    (decision("a-sdd", "correct", fields={"question": "  "}), "fields.question: empty text"),
    (decision("a-sdd", "correct", fields={"question": "two\u2028lines"}), "control character U+2028"),
    (decision("a-sdd", "correct", fields={"question": "q" * 501}), "at most 500 characters"),
    (correction('{"question": "\\ud800"}'), "fields.question: not Unicode text: a lone surrogate U+D800"),
    (correction('{"question": "ok \\udfff"}'), "a lone surrogate U+DFFF at character 4"),
    (correction('{"question": NaN}'), "not JSON: NaN"),
    (correction('{"question": -Infinity}'), "not JSON: -Infinity"),
    (correction('{"question": 1e999}'), "the number 1e999 is beyond the float range"),
    ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
    ("[1, 2]", "a decision must be a JSON object"),
    ("{not json", "not JSON: Expecting property name"),
    (b'{"id": "a-sdd", "decision": "accept", "reviewer": "Jos\xe9"}', "not UTF-8: byte 0xe9 at byte 55 of the line"),
    (b'\xff\xfe{', "not UTF-8: byte 0xff at byte 1"),
])
def test_a_bad_line_is_refused_with_file_line_and_reason_and_the_good_ones_kept(tmp_path, bad, message):
    path = write(tmp_path, decision("b-sll", "reject"), decision("a-sdd", "flag"), bad,
                 decision("c-sdd", "reject"))
    found, refused = read(path, ITEMS)
    assert [line for line, _ in refused] == [3]
    assert message in refused[0].reason, refused[0].reason
    assert {k: d.decision for k, d in found.items()} == {"a-sdd": "flag", "b-sll": "reject", "c-sdd": "reject"}

    report = StageReport("items")
    assert load(path, ITEMS, report) == found
    issue, = report.rejected
    assert issue.line().startswith(f"[review] {path}:3: ") and message in issue.reason


def test_a_refused_line_never_reaches_the_items(tmp_path):
    """What get published: only strings from a type-checked line (not "{'a': 1}", "nan", "inf")."""
    path = write(tmp_path, correction('{"question": {"a": 1}}'), correction('{"question": NaN}'),
                 correction('{"question": 1e999}'), correction('{"question": "\\ud800"}'))
    found, refused = read(path, ITEMS)
    assert found == {} and [line for line, _ in refused] == [1, 2, 3, 4]
    assert [item["question"] for item in apply(ITEMS.values(), found)] == ["q", "q", "q"]


def test_a_correct_question_applies(tmp_path):
    path = write(tmp_path, decision("a-sdd", "correct", fields={"question": "Which disease? \u00e9\U0001f600"}))
    assert apply([ITEMS["a-sdd"]], read(path, ITEMS)[0])[0]["question"] == "Which disease? \u00e9\U0001f600"


def test_lines_are_written_as_strict_ascii_json():
    line = dumps(decision("a-sdd", "accept", note="\u2028 \x85 \U0001f600"))
    assert line.isascii() and "\n" not in line and parse(line, ITEMS).note == "\u2028 \x85 \U0001f600"
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps(decision("a-sdd", "accept", note=float("nan")))
    with pytest.raises(DecisionError, match="unknown item id"):
        parse(dumps(decision("nope", "accept")), ITEMS)
