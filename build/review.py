"""Review the generated items in a local web page; the next `items` build applies the decisions.

    python -m build review --work WORK [--port P] [--reviewer NAME] [--decisions FILE]

Open http://127.0.0.1:P/ (only 127.0.0.1 is served). One item at a time: the image (zoom, brightness and
contrast), the question and options with the gold letters marked, labels, distractor similarity scores and the
review state. Keys: a accept, r reject, f flag, n or → next, p or ← previous (Esc leaves a text field). A
free-text note goes with each decision; a correction form fixes the diagnosis (one of the options) or the
levels. Filters by task, disease, source, subset and review state; reopening resumes at the first unreviewed
item of the filter. /gallery shows thumbnails per disease. Several reviewers can share one server, each under
their own name; a second server on the same decisions file is refused with the first one's address.

Decisions go to WORK/review/decisions.jsonl (see build/decisions.py) with reviewer, UTC time and note. A body
that is not strict UTF-8 JSON, or a line that build.decisions would refuse, is answered with HTTP 400 and the
reason, and never written. Each accepted line rewrites the file: the current bytes plus the line go to a
temporary file beside it, which is fsynced and renamed over the file (os.replace). The rename is atomic, so a
killed server or a closed tab leaves the old file or the new one, never a half line (an append could leave one
if the process dies mid-write). The read-and-rename holds an exclusive lock on FILE's `.lock` file beside it,
so writers in other processes cannot lose each other's lines. A rewrite costs a file copy per click: about 60
ms for a 50,000-line file, far less at the sizes people review. A request whose body stops arriving is
answered 408 after REQUEST_SECONDS, so a stalled client never holds a server thread.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
from flask import Flask, Response, abort, jsonify, render_template, request
from PIL import Image
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import WSGIRequestHandler, make_server

from build import artifacts, decisions
from build.decisions import Decision, DecisionError
from build.items import DECISIONS
from spinebench import DISEASES, QA, TASKS

COMMAND = "review"
HELP = "review the items in a local web page; decisions go to the file the next `items` build applies"
HOST = "127.0.0.1"
STATES = ("unreviewed", *decisions.KINDS)
BODY_KEYS = ("id", "decision", "reviewer", "note", "fields")  # what the page posts
FILTERS = ("task", "disease", "source", "subset", "state")
SHOWN = ("id", "task", "image_id", "question", "options", "answer", "answer_text", "disease", "levels",
         "source", "modality", "region", "view", "patient_id", "severity", "question_id", "present", "mini",
         "image_path")
THUMB_SIDE = 160
REQUEST_SECONDS = 20  # a connection silent this long is answered 408 (a short body) or closed
STATIC = Path(__file__).with_name("review_static")
SECURITY_HEADERS = {
    "Content-Security-Policy":
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", type=Path, required=True,
                        help="work folder after `items` (qa.parquet, images/)")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--reviewer", default="", help="your name for each decision (or type it on the page)")
    parser.add_argument("--decisions", type=Path, help=f"decisions file (default: WORK/{DECISIONS})")


def main(args: argparse.Namespace) -> int:
    if not (args.work / QA).exists():
        print(f"error: {args.work / QA} not found; run `python -m build items --work {args.work}` first")
        return 1
    path = args.decisions or args.work / DECISIONS
    try:
        claim = claim_server(path)
        app = create_app(args.work, path, args.reviewer)
        server = make_server(HOST, args.port, app, threaded=True, request_handler=Handler)
    except (ServerBusy, OSError) as error:
        print(f"error: {error}")
        return 1
    url = f"http://{HOST}:{server.server_port}/"
    claim.write(f"the review server at {url} (pid {os.getpid()})")
    claim.flush()
    for line, reason in app.extensions["ledger"].refused:
        print(f"warning: {path}:{line}: {reason} (the build skips this line; fix or delete it)")
    print(f"review at {url}  (decisions: {path}; Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        claim.close()
    return 0


class ServerBusy(OSError):
    """Another review server is writing the same decisions file."""


def claim_server(path: Path) -> IO[str]:
    """Hold FILE's `.server` lock for as long as the returned file stays open (the OS drops it when the
    process dies, so a killed server leaves no stale lock); raises ServerBusy naming the holder.

    Writes are safe across servers anyway (see Ledger.record); one server per file keeps reviewers on one
    page, where each sees the others' decisions at once, instead of a forgotten second one.
    """
    lock = path.with_name(f".{path.name}.server")
    lock.parent.mkdir(parents=True, exist_ok=True)
    claim = open(lock, "a+", encoding="utf-8")
    try:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        claim.seek(0)
        holder = claim.read().strip() or "another review server"
        claim.close()
        raise ServerBusy(f"{path} is already being reviewed by {holder}: open that page (reviewers share one"
                         " server, each under their own name) or stop that server first") from None
    claim.truncate(0)
    return claim


class Handler(WSGIRequestHandler):
    """Werkzeug's handler with a socket timeout: a body shorter than its Content-Length (or a silent client)
    would otherwise hold its thread forever."""

    timeout = REQUEST_SECONDS


class Ledger:
    """The decisions file, read with build.decisions.read and grown one line at a time by atomic replacement.

    It is reread whenever it changed on disk (an editor, another process), so the page shows the file's state;
    the lines it refuses are kept in `refused`, as the build will skip them.
    """

    def __init__(self, path: Path, items: Mapping[str, Mapping[str, Any]]) -> None:
        self.path, self._items = path, items
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._latest: dict[str, Decision] = {}
        self.refused: list[decisions.Refused] = []
        self.latest()

    def latest(self) -> dict[str, Decision]:
        """Latest decision per item (a snapshot: never changed after it is returned)."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> dict[str, Decision]:
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            self._latest, self.refused = decisions.read(self.path, self._items) if stamp else ({}, [])
            self._stamp = stamp
        return self._latest

    def record(self, entry: dict[str, Any]) -> Decision:
        """Append one decision; raises DecisionError, writing nothing, when build.decisions refuses its line.

        The exact line written is checked (the older ones were when the file was read): a click costs a file
        copy. The thread lock orders this server's requests, the file lock every writer's.
        """
        line = decisions.dumps(entry)
        decision = decisions.parse(line, self._items)
        with self._lock, _exclusive(self.path.with_name(f".{self.path.name}.lock")):
            latest = self._refresh()
            old = self.path.read_bytes() if self.path.exists() else b""
            if old and not old.endswith(b"\n"):
                old += b"\n"
            with artifacts.atomic_path(self.path) as tmp, open(tmp, "wb") as out:
                out.write(old + line.encode("ascii") + b"\n")
                out.flush()
                os.fsync(out.fileno())
            decision = replace(decision, line=old.count(b"\n") + 1)
            self._latest, self._stamp = {**latest, decision.id: decision}, _stamp(self.path)
            return decision


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """flock on `lock` (created if missing); released when the block ends or the process dies."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class Images:
    """PNG bytes by image_id from the work folder's shards: a request names an id, never a path."""

    def __init__(self, folder: Path) -> None:
        self._where: dict[str, tuple[Path, int]] = {}
        for shard in sorted(folder.glob("images-*.parquet")):
            ids = pq.read_table(shard, columns=["image_id"]).column("image_id").to_pylist()
            self._where.update((image_id, (shard, row)) for row, image_id in enumerate(ids))
        self._column = lru_cache(maxsize=2)(lambda shard: pq.read_table(shard, columns=["png"]).column("png"))
        self.thumbnail = lru_cache(maxsize=4096)(self._thumbnail)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._where

    def png(self, image_id: str) -> bytes:
        shard, row = self._where[image_id]
        return self._column(shard)[row].as_py()

    def _thumbnail(self, image_id: str) -> bytes:
        """A small JPEG, made once per image and kept in memory."""
        with Image.open(io.BytesIO(self.png(image_id))) as image:
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            out = io.BytesIO()
            image.convert("L" if image.mode == "L" else "RGB").save(out, "JPEG", quality=80)
        return out.getvalue()


def create_app(work: Path, decisions_file: Path, reviewer: str) -> Flask:
    """The review app over WORK's qa.parquet and image shards, writing only to `decisions_file`."""
    items = {row["id"]: row for row in pq.read_table(work / QA).to_pylist()}
    ledger, images = Ledger(decisions_file, items), Images(work / artifacts.IMAGES_DIR)
    profile_path = work / artifacts.PROFILE
    profile = artifacts.read_json(profile_path)["profile"] if profile_path.exists() else "unknown"
    present = {key: {item[key] for item in items.values()} for key in ("disease", "source")}
    choices = {"task": TASKS, "disease": [d for d in DISEASES if d in present["disease"]],
               "source": sorted(present["source"]), "subset": ("mini",), "state": STATES}

    app = Flask(__name__, static_folder=STATIC / "static", template_folder=STATIC / "templates")
    app.config.update(TRUSTED_HOSTS=[HOST, "localhost"], MAX_CONTENT_LENGTH=1 << 16)
    app.jinja_env.globals.update(profile=profile, work=str(work), choices=choices,
                                 note_chars=decisions.NOTE_CHARS, reviewer_chars=decisions.REVIEWER_CHARS)
    app.extensions["ledger"] = ledger

    def state(item_id: str, latest: Mapping[str, Decision]) -> str:
        return latest[item_id].decision if item_id in latest else "unreviewed"

    def selected() -> tuple[dict[str, str], list[dict[str, Any]], dict[str, Decision]]:
        """The filters asked for, the items they keep (build order) and the latest decisions."""
        chosen = {key: request.args[key] for key in FILTERS if request.args.get(key)}
        latest = ledger.latest()

        def facets(item: dict[str, Any]) -> dict[str, str]:
            return {"task": item["task"], "disease": item["disease"], "source": item["source"],
                    "subset": "mini" if item["mini"] else "", "state": state(item["id"], latest)}

        kept = [item for item in items.values() if all(facets(item)[k] == v for k, v in chosen.items())]
        return chosen, kept, latest

    @app.after_request
    def harden(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/")
    def page() -> str:
        return render_template("review.html", chosen=request.args, reviewer=reviewer)

    @app.get("/gallery")
    def gallery() -> str:
        chosen, kept, latest = selected()
        per = max(1, min(request.args.get("per", 48, type=int), 1000))
        groups = []
        for disease in DISEASES:
            members = [item for item in kept if item["disease"] == disease]
            if members:
                shown = [dict(item, state=state(item["id"], latest),
                              note=latest[item["id"]].note if item["id"] in latest else "")
                         for item in members[:per]]
                groups.append((disease, shown, len(members), dict(chosen, disease=disease)))
        return render_template("gallery.html", chosen=chosen, groups=groups)

    @app.get("/api/items")
    def item_list() -> Response:
        _, kept, latest = selected()
        states = [state(item["id"], latest) for item in kept]
        start = next((i for i, s in enumerate(states) if s == "unreviewed"), 0)
        return jsonify(ids=[item["id"] for item in kept], images=[item["image_id"] for item in kept],
                       states=states, start=start)

    @app.get("/api/item/<item_id>")
    def item(item_id: str) -> Response:
        if item_id not in items:
            abort(404)
        row, decision = items[item_id], ledger.latest().get(item_id)
        return jsonify({**{key: row[key] for key in SHOWN}, "scores": json.loads(row["scores"] or "{}"),
                        "decision": asdict(decision) if decision else None})

    @app.post("/api/decision")
    def decide() -> tuple[Response, int]:
        if not request.is_json:  # JSON only: a cross-site form cannot post it without a preflight
            return jsonify(error="send a JSON object with Content-Type: application/json"), 400
        try:
            body = decisions.strict_json(request.get_data(cache=False).decode("utf-8"))
        except ClientDisconnected:  # werkzeug's name for a socket timeout (Handler) before Content-Length bytes
            return jsonify(error=f"the body did not arrive in full within {Handler.timeout} s"), 408
        except ValueError as error:  # UnicodeDecodeError included
            return jsonify(error=f"the body is {error}"), 400
        if not isinstance(body, dict):
            return jsonify(error="send a JSON object with Content-Type: application/json"), 400
        unknown = sorted(key[:40] for key in set(body) - set(BODY_KEYS))[:5]
        if unknown:
            return jsonify(error=f"unknown keys {unknown} (allowed: {', '.join(BODY_KEYS)})"), 400
        if not isinstance(body.get("id"), str) or body["id"] not in items:
            return jsonify(error=f"unknown item id {str(body.get('id'))[:200]!r}"), 404
        try:
            decision = ledger.record(entry(body))
        except DecisionError as error:
            return jsonify(error=str(error)), 400
        return jsonify(decision=asdict(decision)), 200

    @app.get("/image/<image_id>")
    def image(image_id: str) -> Response:
        return _bytes(images.png, image_id, "image/png")

    @app.get("/thumb/<image_id>")
    def thumbnail(image_id: str) -> Response:
        return _bytes(images.thumbnail, image_id, "image/jpeg")

    def _bytes(read: Callable[[str], bytes], image_id: str, mimetype: str) -> Response:
        if image_id not in images:
            abort(404)
        return Response(read(image_id), mimetype=mimetype, headers={"Cache-Control": "private, max-age=3600"})

    return app


def entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """The decisions-file line for a posted decision, stamped with UTC time; fields only for a correction.

    Values keep the type they were sent with, so build.decisions refuses an object or a number by name.
    """
    reviewer = body.get("reviewer", "")
    line = {"id": body["id"], "decision": body.get("decision"),
            "reviewer": reviewer.strip() if isinstance(reviewer, str) else reviewer,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "note": body.get("note", "")}
    if body.get("decision") == "correct":
        line["fields"] = body.get("fields")
    return line
