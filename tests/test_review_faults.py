"""The review server under planted faults: parallel writers, a second server, a stalled client, and a
decisions file with bad lines given to the next `items` build."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_review import copy_work, first, post, qa_rows
from werkzeug.serving import make_server

from build import config, decisions, items, review
from build.review import HOST, create_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def work(built, tmp_path) -> Path:
    return copy_work(built, tmp_path)


def test_parallel_posts_to_two_servers_keep_every_decision(work):
    """Two servers' ledgers on one file, 50 posts from 10 threads: each rewrite holds the file lock."""
    ids = list(qa_rows(work))[:50]
    path = work / items.DECISIONS
    apps = [create_app(work, path, ""), create_app(work, path, "")]

    def send(index: int) -> int:
        return post(apps[index % 2].test_client(), ids[index], "accept", reviewer=f"r{index}").status_code

    with ThreadPoolExecutor(10) as pool:
        assert list(pool.map(send, range(50))) == [200] * 50
    lines = path.read_bytes().splitlines()
    found, refused = decisions.read(path, qa_rows(work))
    assert len(lines) == 50 and refused == [] and set(found) == set(ids)
    assert sorted(d.line for d in found.values()) == list(range(1, 51))
    for app in apps:  # each server shows the other's decisions too
        assert app.test_client().get("/api/items?state=accept").json["ids"] == ids


def command(work: Path) -> list[str]:
    return [sys.executable, "-m", "build", "review", "--work", str(work), "--port", "0"]


def start_server(work: Path) -> tuple[subprocess.Popen, str]:
    """`python -m build review` on a free port; returns it with its printed lines up to the address."""
    server = subprocess.Popen(command(work), cwd=REPO, stdout=subprocess.PIPE)
    said = b""
    while b"review at" not in said:
        ready, _, _ = select.select([server.stdout], [], [], 120)
        assert ready and server.poll() is None, f"the first server did not start: {said!r}"
        said += os.read(server.stdout.fileno(), 65536)
    return server, said.decode()


def test_a_second_server_on_the_same_decisions_file_is_refused(work):
    path = work / items.DECISIONS
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"id": "x", "decision": "accept", "reviewer": "ana", "time": "2026-11-28T10:00:00Z"}\n')
    server, said = start_server(work)
    try:
        url = said.split("review at ")[1].split()[0]
        assert f"warning: {path}:1: unknown item id 'x' (the build skips this line" in said
        second = subprocess.run(command(work), cwd=REPO, capture_output=True, text=True, timeout=120)
        out = second.stdout
        assert second.returncode == 1, out
        assert f"error: {path} is already being reviewed by the review server at {url} (pid {server.pid})" in out
        assert "open that page" in out
    finally:
        server.kill()  # as the OOM killer would: the OS drops the lock with the process
        server.wait(30)
    review.claim_server(path).close()  # free again, no stale lock to delete by hand


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def served(work, monkeypatch) -> Iterator[int]:
    """The app on a free port with a 1 s request timeout: yields the port."""
    monkeypatch.setattr(review.Handler, "timeout", 1)
    httpd = make_server(HOST, 0, create_app(work, work / items.DECISIONS, ""), threaded=True,
                        request_handler=review.Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()
    thread.join()


def test_a_short_body_or_stalled_headers_do_not_hold_a_thread(work, served):
    """Content-Length 1000 and 6 bytes sent: answered 408 once the timeout passes, then closed. Without the
    timeout both reads below block until the client gives up (socket.timeout fails the test)."""
    head = (f"POST /api/decision HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n")
    with socket.create_connection((HOST, served), timeout=30) as sock:
        sock.sendall(head.encode() + b'{"id":')
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive in full within 1 s" in answer
    with socket.create_connection((HOST, served), timeout=30) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n".encode())  # headers never finished
        assert read_until_closed(sock) == b""
    assert not (work / items.DECISIONS).exists()
    with socket.create_connection((HOST, served), timeout=30) as sock:  # and the server still answers
        sock.sendall(f"GET /api/items HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")


def test_the_next_build_rejects_bad_lines_by_file_and_line_and_applies_the_good_ones(work):
    """The planted lines of issue 14, written to the file by hand or a script: `items` never crashes on one."""
    rows = qa_rows(work)
    sdd, other_sdd, sll = first(rows, "diagnosis", 1), first(rows, "diagnosis", 2), first(rows, "localization")

    def line(item: dict, raw_fields: str = "", kind: str = "correct") -> bytes:
        fields = f', "fields": {raw_fields}' if raw_fields else ""
        return (f'{{"id": "{item["id"]}", "decision": "{kind}", "reviewer": "ana",'
                f' "time": "2026-11-28T10:00:00Z"{fields}}}').encode()

    other = next(option for option in sdd["options"] if option != sdd["disease"])
    planted = [
        line(sdd, json.dumps({"disease": other})),  # 1: good
        line(sdd, '{"question": "\\ud800"}'),  # 2: lone surrogate (crashed items with a traceback)
        line(sdd, '{"question": {"a": 1}}'),  # 3: published as "{'a': 1}"
        line(sdd, '{"question": NaN}'),  # 4: published as "nan"
        line(sdd, '{"question": 1e999}'),  # 5: published as "inf"
        line(sll, kind="reject")[:-1] + b', "note": "Jos\xe9"}',  # 6: Windows-1252, not UTF-8
        b"[" * 30_000,  # 7: nested too deeply
        line(other_sdd, kind="reject"),  # 8: good
    ]
    path = work / items.DECISIONS
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(planted) + b"\n")
    report = items.make_items(work, config.profile("paper"), "fallback", 32, "cpu", path)

    assert [(issue.path, issue.row) for issue in report.rejected] == [(str(path), row) for row in range(2, 8)]
    reasons = [issue.reason for issue in report.rejected]
    for row, expected in zip(range(2, 8), ["a lone surrogate U+D800", "not an object", "not JSON: NaN",
                                           "beyond the float range", "not UTF-8: byte 0xe9", "nested too deeply"]):
        assert expected in reasons[row - 2], (row, reasons[row - 2])
    assert json.loads((work / "items_report.json").read_text())["rejected"][0]["row"] == 2
    rebuilt = qa_rows(work)
    assert rebuilt[sdd["id"]]["disease"] == other and rebuilt[sdd["id"]]["question"] == sdd["question"]
    assert rebuilt[other_sdd["id"]]["review"] == "reject" and rebuilt[sll["id"]]["review"] is None
    assert not any(row["question"] in ("{'a': 1}", "nan", "inf") for row in rebuilt.values())
