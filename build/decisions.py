"""Review decisions: the record of a human's verdict on each generated item, applied by every build.

The file is JSON Lines (one decision per line, appended as reviewers work; a later line about the same item
overrides an earlier one), for example:

    {"id": "vindr-3f2a...-sdd", "decision": "reject", "reviewer": "ana", "time": "2026-11-28T10:00:00Z",
     "note": "implant hides the lesion"}
    {"id": "rsna-1-2-3-sll", "decision": "correct", "fields": {"levels": ["L4/L5"]}, "reviewer": "ana",
     "time": "2026-11-28T10:01:00Z", "note": ""}

decision: `accept` (verified as is), `reject` (the item leaves every configuration; it stays in the
work folder's qa.parquet marked rejected, so a reviewer can still see and reverse it), `correct` (apply
`fields`, then it counts as accepted), `flag` (needs a second look; no effect on the build).
fields a correction may set: `question` (text), `disease` (diagnosis: must be one of the item's options),
`levels` (localization: non-empty subset of L1/L2..L5/S1). Gold letters are recomputed from them.
A line that does not parse, names an unknown item or sets an invalid field stops the build with
FILE:LINE and the reason: a maintainer's own file is fixed, not skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinebench import LETTERS, LEVELS

KINDS = ("accept", "reject", "correct", "flag")
FIELDS = ("question", "disease", "levels")


class DecisionError(ValueError):
    """A decisions file that cannot be applied; the message starts with FILE:LINE."""


@dataclass(frozen=True)
class Decision:
    id: str
    decision: str
    reviewer: str
    time: str
    note: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


def load(path: Path, items: Mapping[str, Mapping[str, Any]]) -> dict[str, Decision]:
    """Latest decision per item id; checks every line against the items it names."""
    latest: dict[str, Decision] = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            decision = _parse(json.loads(text), number)
            _check(decision, items)
        except (ValueError, TypeError, KeyError) as error:
            raise DecisionError(f"{path}:{number}: {error}") from None
        latest[decision.id] = decision
    return latest


def _parse(data: Any, number: int) -> Decision:
    if not isinstance(data, dict):
        raise ValueError("a decision must be a JSON object")
    missing = [k for k in ("id", "decision", "reviewer", "time") if not data.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if data["decision"] not in KINDS:
        raise ValueError(f"decision {data['decision']!r} is not one of {', '.join(KINDS)}")
    fields = data.get("fields") or {}
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"fields {sorted(unknown)} cannot be corrected (only {', '.join(FIELDS)})")
    if data["decision"] == "correct" and not fields:
        raise ValueError("a correction needs fields")
    return Decision(str(data["id"]), data["decision"], str(data["reviewer"]), str(data["time"]),
                    str(data.get("note") or ""), fields, number)


def _check(decision: Decision, items: Mapping[str, Mapping[str, Any]]) -> None:
    item = items.get(decision.id)
    if item is None:
        raise ValueError(f"unknown item id {decision.id!r}")
    fields = decision.fields
    if "disease" in fields and (item["task"] != "diagnosis" or fields["disease"] not in item["options"]):
        raise ValueError(f"disease {fields['disease']!r} is not an option of diagnosis item {decision.id}")
    if "levels" in fields:
        levels = fields["levels"]
        if item["task"] != "localization" or not levels or not set(levels) <= set(LEVELS):
            raise ValueError(f"levels {levels!r} must be a non-empty subset of {LEVELS} on a localization item")
    if "question" in fields and not str(fields["question"]).strip():
        raise ValueError("an empty question")


def apply(items: Iterable[dict[str, Any]], decisions: Mapping[str, Decision]) -> list[dict[str, Any]]:
    """Items with corrections applied; each carries its review state (`reject` ones are left out later)."""
    out = []
    for item in items:
        decision = decisions.get(item["id"])
        item = dict(item, review=decision.decision if decision else None)
        out.append(_correct(item, decision.fields) if item["review"] == "correct" else item)
    return out


def _correct(item: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    item = dict(item)
    if "question" in fields:
        item["question"] = str(fields["question"])
    if "disease" in fields:
        item["disease"] = fields["disease"]
        gold = {fields["disease"]}
    elif "levels" in fields:
        item["levels"] = [level for level in LEVELS if level in fields["levels"]]
        gold = set(item["levels"])
    else:
        return item
    item["answer"] = [letter for letter, text in zip(LETTERS, item["options"]) if text in gold]
    item["answer_text"] = [text for text in item["options"] if text in gold]
    return item
