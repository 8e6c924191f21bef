"""Published text that a spreadsheet would run: a cell starting with = + - @ (or a tab or carriage return)
is a formula to Excel or LibreOffice once someone opens the data there (`=cmd|' /C calc'!A0`, CSV
injection). Raw releases carry free text into patient ids and views, and reviewers type questions, so
every text column of the items is checked before it is written: such a value gets a leading apostrophe,
the spreadsheets' own "this is text" mark, and a warning in the report. Numbers such as -3 stay as they are.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from build.report import StageReport

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MARK = "'"


def is_formula(value: str) -> bool:
    if not value.startswith(FORMULA_START):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def neutralise(rows: list[dict[str, Any]], schema: pa.Schema, report: StageReport) -> None:
    """Mark, in place, every formula-like value of the schema's text and text-list columns; warn for each."""
    for field in schema:
        text = pa.types.is_string(field.type)
        if not (text or pa.types.is_list(field.type) and pa.types.is_string(field.type.value_type)):
            continue
        for row in rows:
            value = row.get(field.name)
            values = [value] if text else value or []
            if not any(isinstance(v, str) and is_formula(v) for v in values):
                continue
            safe = [MARK + v if isinstance(v, str) and is_formula(v) else v for v in values]
            row[field.name] = safe[0] if text else safe
            report.warn(row.get("source", "all"), row.get("image_path", row.get("id", "")),
                        f"{field.name} {value!r} of item {row.get('id')} would run as a spreadsheet formula; "
                        f"written as {row[field.name]!r}")
