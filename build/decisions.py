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
fields a correction may set: `question` (one line of text), `disease` (diagnosis: must be one of the item's
options), `levels` (localization: non-empty subset of L1/L2..L5/S1). Gold letters are recomputed from them.

Each line is checked by type before anything is applied, because its text ends up in the published dataset:
UTF-8, strict JSON (no NaN, Infinity or numbers that overflow), only the keys above, text that is Unicode
(no lone surrogates), of bounded length and, except the note, one line. A line that fails is refused with
FILE:LINE and the reason: the build reports it as rejected and applies the good lines (an earlier decision
about the same item then stands), so one bad line never stops a build or costs the other decisions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      ValidationError)

from build.report import StageReport
from spinebench import LETTERS, LEVELS

KINDS = ("accept", "reject", "correct", "flag")
NOTE_CHARS, REVIEWER_CHARS = 2000, 100  # also the page's maxlength
BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # Unicode's Cc, Zl and Zp: controls and line breaks


class DecisionError(ValueError):
    """A decision that cannot be applied, with the reason (`read` pairs it with the line it came from)."""


class Refused(NamedTuple):
    line: int
    reason: str


@dataclass(frozen=True)
class Decision:
    id: str
    decision: str
    reviewer: str
    time: str
    note: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


def _unicode(value: Any) -> Any:
    """Refuse a lone surrogate ("\\ud800" in JSON): Python holds it, but no UTF-8 writer (Parquet) can."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"not Unicode text: a lone surrogate U+{ord(value[error.start]):04X}"
                             f" at character {error.start + 1}") from None
    return value


def _one_line(text: str) -> str:
    if not text.strip():
        raise ValueError("empty text")
    bad = BREAKS.search(text)
    if bad:
        raise ValueError(f"control character U+{ord(bad[0]):04X}: must be one line of text")
    return text


def _iso_time(text: str) -> str:
    datetime.fromisoformat(text)  # ValueError names the text
    return text


def _line(most: int) -> Any:
    """One line of text of at most `most` characters."""
    return Annotated[str, StringConstraints(max_length=most), BeforeValidator(_unicode),
                     AfterValidator(_one_line)]


class Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: _line(500) | None = None
    disease: _line(100) | None = None
    levels: Annotated[list[Literal[LEVELS]], Field(min_length=1, max_length=len(LEVELS))] | None = None


class Line(BaseModel):
    """One line of the file, by type; what it may say about a given item is checked in _check."""
    model_config = ConfigDict(extra="forbid", strict=True)
    id: _line(200)
    decision: Literal[KINDS]
    reviewer: _line(REVIEWER_CHARS)
    time: Annotated[_line(40), AfterValidator(_iso_time)]
    note: Annotated[str, StringConstraints(max_length=NOTE_CHARS), BeforeValidator(_unicode)] = ""
    fields: Fields | None = None


def strict_json(text: str) -> Any:
    """json.loads, refusing what RFC 8259 does not allow (NaN, Infinity, numbers beyond float) and answering
    nesting too deep for the parser with a ValueError instead of a RecursionError."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    except RecursionError:
        raise ValueError("not JSON this reads: nested too deeply") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name} (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"not JSON this reads: the number {text[:40]} is beyond the float range")
    return number


def dumps(line: Mapping[str, Any]) -> str:
    """One line for the file: strict JSON (ValueError on NaN), ASCII so no raw U+2028 or NEL in a note."""
    return json.dumps(dict(line), ensure_ascii=True, allow_nan=False)


def parse(text: str, items: Mapping[str, Mapping[str, Any]], number: int = 0) -> Decision:
    """The decision on one line of the file; raises DecisionError with the reason (no FILE:LINE)."""
    try:
        data = strict_json(text)
        if not isinstance(data, dict):
            raise ValueError("a decision must be a JSON object")
        line = Line.model_validate(data)
    except ValidationError as error:
        raise DecisionError(_reasons(error)) from None
    except ValueError as error:
        raise DecisionError(str(error)) from None
    fields = line.fields.model_dump(exclude_none=True) if line.fields else {}
    decision = Decision(line.id, line.decision, line.reviewer, line.time, line.note, fields, number)
    try:
        _check(decision, items)
    except ValueError as error:
        raise DecisionError(str(error)) from None
    return decision


def _reasons(error: ValidationError) -> str:
    """pydantic's findings in the file's terms: which key, what is wrong, what is allowed."""
    missing, reasons = [], []
    for found in error.errors(include_url=False):
        where = ".".join(str(part) for part in found["loc"])
        if found["type"] == "missing":
            missing.append(where)
        elif found["type"] == "extra_forbidden":
            allowed = Fields.model_fields if found["loc"][0] == "fields" else Line.model_fields
            reasons.append(f"unknown key {where!r} (allowed: {', '.join(allowed)})")
        else:
            given = f", not {_json_type(found['input'])}" if found["type"].endswith("_type") else ""
            said = "Input should be an object" if found["type"] == "model_type" else found["msg"]
            reasons.append(f"{where}: {said.removeprefix('Value error, ')}{given}")
    return "; ".join(([f"missing {', '.join(missing)}"] if missing else []) + reasons)


def _json_type(value: Any) -> str:
    kinds = ((bool, "true/false"), (int, "a number"), (float, "a number"), (str, "a string"),
             (list, "an array"), (dict, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _check(decision: Decision, items: Mapping[str, Mapping[str, Any]]) -> None:
    fields = decision.fields
    if decision.decision == "correct" and not fields:
        raise ValueError("a correction needs fields")
    if decision.decision != "correct" and fields:
        raise ValueError(f"fields go with a correction, not with {decision.decision!r}")
    item = items.get(decision.id)
    if item is None:
        raise ValueError(f"unknown item id {decision.id!r}")
    if "disease" in fields and (item["task"] != "diagnosis" or fields["disease"] not in item["options"]):
        raise ValueError(f"disease {fields['disease']!r} is not an option of diagnosis item {decision.id}")
    if "levels" in fields and item["task"] != "localization":
        raise ValueError(f"levels {fields['levels']!r} can only correct a localization item")


def read(path: Path, items: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Decision], list[Refused]]:
    """Latest good decision per item id, and the lines refused with their reason.

    Split on b"\\n" only, and decoded line by line: one undecodable line is one refused line.
    """
    latest: dict[str, Decision] = {}
    refused = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            decision = parse(_decode(raw, number), items, number)
        except DecisionError as error:
            refused.append(Refused(number, str(error)))
            continue
        latest[decision.id] = decision
    return latest, refused


def _decode(raw: bytes, number: int) -> str:
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")  # an editor's BOM on the first line
    except UnicodeDecodeError as error:
        raise DecisionError(f"not UTF-8: byte 0x{raw[error.start]:02x} at byte {error.start + 1} of the line"
                            f" ({error.reason}); save the file as UTF-8") from None


def load(path: Path, items: Mapping[str, Mapping[str, Any]], report: StageReport) -> dict[str, Decision]:
    """Latest good decision per item id; each refused line goes into `report` as rejected, with FILE:LINE."""
    latest, refused = read(path, items)
    for line, reason in refused:
        report.reject("review", str(path), reason, line)
    return latest


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
        item["question"] = fields["question"]
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
