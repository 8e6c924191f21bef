"""The review server, through Flask's test client on a private copy of the session build's work folder."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from build import config, decisions, items
from build.review import create_app

PLANTED = '<img src=x onerror="window.planted=1">Which disease <b>is</b> shown?'  # HTML in a question


def copy_work(built, tmp_path: Path) -> Path:
    """The session work folder copied (it is shared), with HTML planted in the first diagnosis question."""
    work = shutil.copytree(built.work, tmp_path / "work")
    rows = pq.read_table(work / items.QA).to_pylist()
    next(row for row in rows if row["task"] == "diagnosis")["question"] = PLANTED
    pq.write_table(pa.Table.from_pylist(rows, schema=items.QA_SCHEMA), work / items.QA)
    return work


def qa_rows(work: Path) -> dict[str, dict]:
    return {row["id"]: row for row in pq.read_table(work / items.QA).to_pylist()}


@pytest.fixture
def work(built, tmp_path) -> Path:
    return copy_work(built, tmp_path)


@pytest.fixture
def client(work):
    return create_app(work, work / items.DECISIONS, "").test_client()


def post(client, item_id: str, kind: str, reviewer: str = "ana", **extra):
    return client.post("/api/decision", json={"id": item_id, "decision": kind, "reviewer": reviewer, **extra})


def first(rows: dict[str, dict], task: str, skip: int = 0) -> dict:
    return [row for row in rows.values() if row["task"] == task][skip]


def test_decisions_are_written_with_author_time_and_note_and_load(work, client):
    rows = qa_rows(work)
    sdd, sll = first(rows, "diagnosis", 1), first(rows, "localization")
    other = next(option for option in sdd["options"] if option != sdd["disease"])
    note = "odd \u2028 separator\x85 and \"quotes\""  # splitlines() would cut a raw U+2028 or NEL
    assert post(client, sdd["id"], "accept", note=note).status_code == 200
    assert post(client, sdd["id"], "correct", fields={"disease": other}).status_code == 200
    answer = post(client, sll["id"], "correct", fields={"levels": ["L5/S1"]})
    assert answer.status_code == 200 and answer.json["decision"]["fields"] == {"levels": ["L5/S1"]}

    path = work / items.DECISIONS
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["note"] == note and {line["reviewer"] for line in lines} == {"ana"}
    for line in lines:
        assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0
    found, refused = decisions.read(path, rows)
    assert refused == [] and found[sdd["id"]].decision == "correct" and found[sdd["id"]].fields == {"disease": other}
    assert client.get(f"/api/item/{sll['id']}").json["decision"]["decision"] == "correct"


def test_each_reviewer_keeps_their_decisions(work, client):
    item_id = first(qa_rows(work), "diagnosis")["id"]
    other_server = create_app(work, work / items.DECISIONS, "").test_client()
    post(client, item_id, "accept", reviewer="ana")
    post(other_server, item_id, "flag", reviewer="ben", note="second look")
    lines = [json.loads(line) for line in (work / items.DECISIONS).read_text().splitlines()]
    assert [(line["reviewer"], line["decision"]) for line in lines] == [("ana", "accept"), ("ben", "flag")]
    latest = client.get(f"/api/item/{item_id}").json["decision"]  # the first server rereads the changed file
    assert (latest["reviewer"], latest["note"], latest["line"]) == ("ben", "second look", 2)
    names = sorted(path.name for path in (work / items.DECISIONS).parent.iterdir())
    assert names == [".decisions.jsonl.lock", "decisions.jsonl"]  # no temporary file left


@pytest.mark.parametrize("body,status,reason", [
    ({"decision": "correct", "fields": {"disease": "Cervical kyphosis-ish"}}, 400, "is not an option"),
    ({"decision": "correct", "fields": {"levels": ["L1/L2"]}}, 400, "only correct a localization item"),
    ({"decision": "correct"}, 400, "needs fields"),
    ({"decision": "maybe"}, 400, "decision: Input should be 'accept', 'reject', 'correct' or 'flag'"),
    ({"decision": "accept", "reviewer": " "}, 400, "reviewer: empty text"),
    ({"decision": "accept", "reviewer": {"name": "ana"}}, 400, "reviewer: Input should be a valid string"),
    ({"decision": "accept", "note": 5}, 400, "note: Input should be a valid string, not a number"),
    ({"decision": "accept", "note": "n" * 2001}, 400, "note: String should have at most 2000 characters"),
    ({"decision": "correct", "fields": {"question": {"a": 1}}}, 400, "fields.question: Input should be a valid"
                                                                      " string, not an object"),
    ({"decision": "correct", "fields": {"question": "\ud800"}}, 400, "a lone surrogate U+D800"),
    ({"decision": "correct", "fields": {"question": "a\nb"}}, 400, "must be one line of text"),
    ({"decision": "correct", "fields": {"answer": ["A"]}}, 400, "unknown key 'fields.answer'"),
    ({"decision": "accept", "id": "no-such-item"}, 404, "unknown item id"),
    ({"decision": "accept", "id": ["a list"]}, 404, "unknown item id"),
])
def test_bad_decisions_are_refused_with_the_reason_and_not_written(work, client, body, status, reason):
    body = {"id": first(qa_rows(work), "diagnosis")["id"], "reviewer": "ana", **body}
    answer = client.post("/api/decision", json=body)
    assert answer.status_code == status and reason in answer.json["error"], answer.json
    assert not (work / items.DECISIONS).exists()


@pytest.mark.parametrize("question,reason", [
    ('"\\ud800"', "a lone surrogate U+D800"),  # the JSON escape, as a script would send it
    ("NaN", "not JSON: NaN"), ("Infinity", "not JSON: Infinity"),
    ("1e999", "the number 1e999 is beyond the float range"),
    ("[" * 30_000 + "]" * 30_000, "nested too deeply"),  # was a 500 (RecursionError)
    ('"x"}, "x": {"y": 1', "unknown keys ['x'] (allowed: id, decision, reviewer, note, fields)"),
    ('"x" "y"', "not JSON: Expecting ',' delimiter"),
])
def test_bodies_that_are_not_strict_json_are_refused(work, client, question, reason):
    """Raw bodies (Flask's test client would encode a Python value as valid JSON)."""
    item_id = first(qa_rows(work), "diagnosis")["id"]
    raw = (f'{{"id": "{item_id}", "decision": "correct", "reviewer": "ana", "fields": {{"question": {question}}}}}')
    answer = client.post("/api/decision", data=raw, content_type="application/json")
    assert answer.status_code == 400 and reason in answer.json["error"], answer.json
    assert not (work / items.DECISIONS).exists()


def test_a_body_that_is_not_utf8_is_refused(work, client):
    item_id = first(qa_rows(work), "diagnosis")["id"]
    raw = f'{{"id": "{item_id}", "decision": "accept", "reviewer": "Jos\xe9"}}'.encode("latin-1")
    answer = client.post("/api/decision", data=raw, content_type="application/json")
    assert answer.status_code == 400 and "'utf-8' codec can't decode byte 0xe9" in answer.json["error"]
    assert not (work / items.DECISIONS).exists()


def test_only_json_is_accepted(work, client):
    item_id = first(qa_rows(work), "diagnosis")["id"]
    form = client.post("/api/decision", data={"id": item_id, "decision": "accept", "reviewer": "ana"})
    assert form.status_code == 400 and not (work / items.DECISIONS).exists()


def test_resume_at_the_first_unreviewed_item_of_the_filter(work, client):
    rows = qa_rows(work)
    listed = client.get("/api/items").json
    assert listed["ids"] == list(rows) and listed["start"] == 0
    for item_id in listed["ids"][:3]:
        post(client, item_id, "accept")
    reopened = create_app(work, work / items.DECISIONS, "").test_client()  # a restarted server
    listed = reopened.get("/api/items").json
    assert listed["start"] == 3 and listed["states"][:4] == ["accept"] * 3 + ["unreviewed"]
    localization = [i for i, row in rows.items() if row["task"] == "localization"]
    post(client, localization[0], "reject")
    listed = reopened.get("/api/items?task=localization").json
    assert listed["ids"] == localization and listed["start"] == 1


def test_filters_combine(work, client):
    rows = qa_rows(work)
    row = first(rows, "diagnosis", 2)
    post(client, row["id"], "flag")
    query = {"task": "diagnosis", "disease": row["disease"], "source": row["source"]}
    listed = client.get("/api/items", query_string=query).json["ids"]
    assert row["id"] in listed
    assert listed == [i for i, r in rows.items() if all(r[k] == v for k, v in query.items())]
    assert client.get("/api/items?state=flag").json["ids"] == [row["id"]]
    assert client.get("/api/items?subset=mini").json["ids"] == [i for i, r in rows.items() if r["mini"]]
    unreviewed = client.get("/api/items?state=unreviewed").json
    assert row["id"] not in unreviewed["ids"] and len(unreviewed["ids"]) == len(rows) - 1


@pytest.mark.parametrize("url", [
    "/image/../../etc/passwd", "/image/..%2F..%2Fetc%2Fpasswd", "/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/image/..", "/image/%2e%2e", "/thumb/..%2Fqa.parquet", "/image/images-00000.parquet",
    "/image/no-such-image", "/thumb/no-such-image", "/static/../review.py",
    "/static/%2e%2e/templates/base.html", "/api/item/..%2Fqa",
])
def test_paths_from_the_request_are_never_opened(client, url):
    assert client.get(url).status_code == 404


def test_images_and_thumbnails_by_id(work, client):
    image_id = first(qa_rows(work), "diagnosis")["image_id"]
    png = client.get(f"/image/{image_id}")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    thumb = client.get(f"/thumb/{image_id}")
    assert thumb.mimetype == "image/jpeg" and len(thumb.data) < len(png.data)


def test_text_is_escaped(work):
    rows = qa_rows(work)
    planted = next(row for row in rows.values() if row["question"] == PLANTED)
    client = create_app(work, work / items.DECISIONS, '"><script>alert(1)</script>').test_client()
    post(client, planted["id"], "flag", note="<script>alert(2)</script>")
    gallery = client.get("/gallery?task=diagnosis").text
    assert "&lt;img src=x onerror=" in gallery and "&lt;script&gt;alert(2)" in gallery
    page = client.get("/").text
    assert "&#34;&gt;&lt;script&gt;alert(1)" in page
    for html in (gallery, page):
        assert "<img src=x" not in html and "<script>alert" not in html
    data = client.get(f"/api/item/{planted['id']}")
    assert data.mimetype == "application/json" and data.json["question"] == PLANTED  # the JS sets textContent
    assert "script-src" not in data.headers["Content-Security-Policy"]  # default-src 'self': no inline script
    assert data.headers["X-Content-Type-Options"] == "nosniff"


def test_gallery_groups_thumbnails_by_disease_and_links_to_items(work, client):
    rows = qa_rows(work)
    html = client.get("/gallery?per=2").text
    for disease in {row["disease"] for row in rows.values()}:
        assert f"<h2>{disease} <small>" in html
    row = first(rows, "diagnosis")
    assert f'src="/thumb/{row["image_id"]}"' in html and f'href="/?item={row["id"]}' in html


def test_other_hosts_are_refused(client):
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200


def test_lines_the_build_refuses_are_skipped_by_the_server_too(work):
    rows = qa_rows(work)
    path = work / items.DECISIONS
    path.parent.mkdir(parents=True)
    good = json.dumps({"id": first(rows, "diagnosis")["id"], "decision": "flag", "reviewer": "ana",
                       "time": "2026-11-28T10:00:00Z"})
    path.write_bytes(b'{"id": "x", "decision": "accept"}\n' + good.encode() + b'\n\xff\n')
    app = create_app(work, path, "")
    assert [(line, reason[:26]) for line, reason in app.extensions["ledger"].refused] == [
        (1, "missing reviewer, time"), (3, "not UTF-8: byte 0xff at by")]
    assert app.test_client().get("/api/items?state=flag").json["ids"] == [first(rows, "diagnosis")["id"]]


def test_the_next_build_applies_the_decisions(work, client):
    rows = qa_rows(work)
    rejected, sdd, sll = first(rows, "diagnosis", 1), first(rows, "diagnosis", 2), first(rows, "localization")
    other = next(option for option in sdd["options"] if option != sdd["disease"])
    levels = ["L1/L2"] if sll["levels"] != ["L1/L2"] else ["L2/L3"]
    post(client, rejected["id"], "reject")
    post(client, sdd["id"], "correct", fields={"disease": other})
    post(client, sll["id"], "correct", fields={"levels": levels})
    path = work / items.DECISIONS
    items.make_items(work, config.profile("paper"), "fallback", 32, "cpu", path)

    rebuilt = qa_rows(work)
    assert rebuilt[rejected["id"]]["review"] == "reject"  # kept in the work folder, left out of every config
    assert rebuilt[sdd["id"]]["disease"] == other and rebuilt[sdd["id"]]["answer_text"] == [other]
    assert rebuilt[sll["id"]]["levels"] == levels and rebuilt[sll["id"]]["review"] == "correct"

    before = path.read_bytes()  # after the rebuild, a rejection can still be seen and reversed
    client = create_app(work, path, "").test_client()
    listed = client.get("/api/items").json
    assert listed["states"][listed["ids"].index(rejected["id"])] == "reject"
    assert listed["states"][listed["ids"].index(sdd["id"])] == "correct"
    assert post(client, rejected["id"], "accept").status_code == 200
    assert post(client, sdd["id"], "accept").status_code == 200
    assert path.read_bytes().startswith(before)


def test_the_command_explains_a_work_folder_without_items(tmp_path, capsys):
    from build.__main__ import main

    assert main(["review", "--work", str(tmp_path)]) == 1
    assert "run `python -m build items" in capsys.readouterr().out
