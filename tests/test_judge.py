"""The optional judge (evaluation/judge.py) against a fake OpenAI-compatible judge on 127.0.0.1.

The report's hand case (tests/cases/report_details/mini.json) has two replies the rules cannot read:
sdd-3 ("I cannot tell from this image.", gold C) and sll-4 ("No idea, sorry.", gold C). Expected figures
are counted from those rows by hand: the rules alone give SDD 3/6 and SLL 1/4.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from evaluation import report as rp
from evaluation.__main__ import main as evaluation_main
from evaluation.judge import JUDGE_PROMPT_MARK, read_answer
from loopback import json_server
from test_report import hand_run  # noqa: F401  (the fixture)

SECRET = "sk-judge-not-a-real-key"
SDD3, SLL4 = "I cannot tell from this image.", "No idea, sorry."


@contextmanager
def fake_judge(answer: Callable[[str], str | None], status: int = 200) -> Iterator[tuple[str, list]]:
    """A judge answering `answer(prompt)` (None: null content); yields its base URL and the requests."""
    seen: list[dict] = []

    def respond(path: str, headers: dict[str, str], body: bytes) -> tuple[int, object, dict[str, str]]:
        payload = json.loads(body)
        prompt = payload["messages"][0]["content"]
        seen.append({"prompt": prompt, "auth": headers.get("Authorization"), **payload})
        reply = {"choices": [{"message": {"content": answer(prompt)}, "finish_reason": "stop"}]}
        return status, reply if status == 200 else {"error": SECRET}, {}

    with json_server(respond) as base:
        yield base, seen


@pytest.fixture
def judge_env(monkeypatch):
    def configure(base: str) -> None:
        monkeypatch.setenv("SPINEBENCH_JUDGE_BASE", base)
        monkeypatch.setenv("SPINEBENCH_JUDGE_MODEL", "fake-judge")
        monkeypatch.setenv("SPINEBENCH_JUDGE_KEY", SECRET)
        monkeypatch.setenv("SPINEBENCH_JUDGE_RETRIES", "0")

    return configure


def sensible(prompt: str) -> str:
    return "[C]" if SDD3 in prompt else "I think maybe B?"  # SLL: garbage


@pytest.mark.parametrize(
    "answer, multi, letters",
    [("[B]", False, ["B"]), ("B", False, ["B"]), (" [ b ] ", False, None), ("[B, D]", True, ["B", "D"]),
     ("D, B.", True, ["B", "D"]), ("NONE", False, None), ("[none]", True, None), ("[B, D]", False, None),
     ("[F]", False, None), ("The answer is B", False, None), ("", False, None), ("[]", True, None),
     ("<think>It says C, not B.</think>\n[C]", False, ["C"]), ("<think>[C]", False, None)],
)
def test_the_judges_answer_is_read_strictly(answer, multi, letters):
    assert read_answer(answer, ["o1", "o2", "o3", "o4", "o5"], multi) == letters


def test_judge_reads_only_what_the_rules_cannot_and_is_cached(hand_run, judge_env):  # noqa: F811
    with fake_judge(sensible) as (base, seen):
        judge_env(base)
        report = rp.build_report(hand_run, "spinebench:mini", judge=True)
        assert sorted(SDD3 in call["prompt"] or SLL4 in call["prompt"] for call in seen) == [True, True]
        calls = len(seen)
        again = rp.build_report(hand_run, "spinebench:mini", judge=True)
    # two models (hand-model, org/hand-model) share the same two replies: asked once each, then cached
    assert calls == 2 and len(seen) == 2
    assert again["models"] == report["models"]
    assert all(call["auth"] == f"Bearer {SECRET}" and call["temperature"] == 0 for call in seen)
    assert all(JUDGE_PROMPT_MARK in call["prompt"] and "gold" not in call["prompt"].lower() for call in seen)
    summary = report["models"]["hand-model"]
    assert summary["judge"] == {"asked": 2, "extracted": 1, "no_answer": 1, "failed": 0}
    assert summary["parsing"]["diagnosis"] | {} == {
        "n": 6, "rules": 5, "judge": 1, "unparsed": 0,
        "rules_rate": pytest.approx(5 / 6), "judge_rate": pytest.approx(1 / 6), "unparsed_rate": 0.0}
    localization = summary["parsing"]["localization"]
    assert (localization["judge"], localization["unparsed"]) == (0, 1)
    assert summary["table"]["sdd_acc"]["value"] == 0.5  # the rules alone
    assert summary["table_with_judge"]["sdd_acc"]["value"] == pytest.approx(4 / 6)  # sdd-3 read as C, right
    assert summary["table_with_judge"]["sll_acc"]["value"] == 0.25  # garbage adds nothing
    assert summary["parse_failures"]["diagnosis"]["failed"] == 1  # lighteval's own flag is untouched


@pytest.mark.parametrize(
    "sdd, sll, failed",
    [("B, C", "[F]", 0),  # two letters for one answer; a letter beyond the options
     ("Sure! The answer is clearly (C).", "%%%", 0),  # prose; noise
     (None, "L4/L5", 1)],  # null content (a failed call, not cached); option text instead of letters
)
def test_judge_answering_garbage_adds_nothing(hand_run, judge_env, sdd, sll, failed):  # noqa: F811
    with fake_judge(lambda prompt: sdd if SDD3 in prompt else sll) as (base, seen):
        judge_env(base)
        report = rp.build_report(hand_run, "spinebench:mini", judge=True)
    for summary in report["models"].values():
        assert summary["table_with_judge"] == summary["table"]
        assert summary["parsing"]["diagnosis"]["judge"] == summary["parsing"]["localization"]["judge"] == 0
        assert summary["judge"] == {"asked": 2, "extracted": 0, "no_answer": 2 - failed, "failed": failed}
    cached = (hand_run / rp.JUDGE_CACHE).read_text().splitlines()
    assert len(cached) == 2 - failed


def test_judge_refusing_the_key_stops_with_one_line_and_no_key(hand_run, judge_env, tmp_path):  # noqa: F811
    with fake_judge(sensible, status=401) as (base, seen):
        judge_env(base)
        with pytest.raises(SystemExit) as stopped:
            evaluation_main(["report", str(hand_run), "--out", str(tmp_path / "r"), "--judge"])
    message = str(stopped.value)
    assert "HTTP 401" in message and "SPINEBENCH_JUDGE_KEY" in message and SECRET not in message
    assert "\n" not in message and not (tmp_path / "r").exists()


def test_judge_not_configured_is_a_clear_error(hand_run, monkeypatch, tmp_path, capsys):  # noqa: F811
    monkeypatch.delenv("SPINEBENCH_JUDGE_BASE", raising=False)
    assert evaluation_main(["report", str(hand_run), "--out", str(tmp_path / "r"), "--judge"]) == 1
    assert "set SPINEBENCH_JUDGE_BASE" in capsys.readouterr().err


def test_report_shows_both_rows_and_the_parse_shares(hand_run, judge_env, tmp_path):  # noqa: F811
    with fake_judge(sensible) as (base, _):
        judge_env(base)
        assert evaluation_main(["report", str(hand_run), "--out", str(tmp_path / "r"), "--judge"]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| hand-model | 50.00 [" in text and "| hand-model + judge | 66.67 [" in text
    assert "| hand-model | SDD | 6 | 5 (83.33%) | 1 (16.67%) | 0 (0.00%) |" in text
    assert "| hand-model | SLL | 4 | 3 (75.00%) | 0 (0.00%) | 1 (25.00%) |" in text
