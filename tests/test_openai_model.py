"""evaluation/openai_model.py against a local OpenAI-compatible stub (loopback only, no network).

The stub checks each request's shape (the prompt text, then exactly one PNG data URI image; none for
the text-only variant), records it, and replies with the gold letters it looks up by prompt text and
image pixels in a table built from the dataset rows, so a correct client scores exactly 1.0. Scripted
failures, delays and per-request latencies prove retries, timeouts, the failure policy, ordering and
concurrency. One test runs the real `lighteval custom` command on the session's exported Hub folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pytest
from PIL import Image

from evaluation import spinebench_tasks
from evaluation.openai_model import EndpointError, OpenAIModel, Settings
from evaluation.prompts import WITHHELD, build_prompt, final_line
from hub_fixture import write_hub_folder
from loopback import json_server

ROOT = Path(__file__).resolve().parents[1]
TASK_FILE = ROOT / "evaluation" / "spinebench_tasks.py"
MODEL_FILE = ROOT / "evaluation" / "openai_model.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SERVED = "stub-vlm"
SECRET = "sk-test-not-a-real-key"
PNG_PREFIX = "data:image/png;base64,"
Key = tuple[str, str | None]  # (prompt text, pixel digest of the image or None)


def pixel_digest(image: Image.Image) -> str:
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def gold_table(hub: Path, config: str) -> dict[Key, str]:
    """Each item's prompt and image, mapped to the final line that names its gold letters."""
    table: dict[Key, str] = {}
    for row in datasets.load_dataset(str(hub), config, split="test"):
        key = (build_prompt(row), pixel_digest(row["image"]))
        reply = f"Reasoning from the image.\n{final_line(row['task'], row['answer'])}"
        assert table.setdefault(key, reply) == reply, f"two items share prompt and image: {row['id']}"
    return table


@dataclass
class Stub:
    """What the fake endpoint answers, and what it saw."""

    answers: dict[Key, str]
    # the first calls' statuses, or a 200's body (a dict), then normal replies
    script: list[int | dict] = field(default_factory=list)
    delay: Callable[[int], float] = lambda call: 0.0  # seconds to wait before answering call number n
    requests: list[dict] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        with self.lock:
            call = len(self.requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                request = {"headers": headers, **self.parse(path, body)}
            except (ValueError, KeyError, TypeError, binascii.Error, OSError) as error:
                request = {"headers": headers, "key": None}
                self.violations.append(f"call {call}: {error}")
            self.requests.append(request)
        try:
            time.sleep(self.delay(call))
            status = self.script[call] if call < len(self.script) else 200
            if isinstance(status, dict):
                return 200, status
            if status != 200:
                return status, {"error": {"message": f"scripted {status}; key was {SECRET}"}}
            reply = self.answers.get(request["key"], "I cannot tell.")
            return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                      "finish_reason": "stop"}]}
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def parse(path: str, body: bytes) -> dict:
        """The request's key, checked against the shape the client promises."""
        if path != "/v1/chat/completions":
            raise ValueError(f"path {path}")
        payload = json.loads(body)
        (message,) = payload["messages"]
        text, *images = message["content"]
        if message["role"] != "user" or text["type"] != "text" or payload["temperature"] != 0:
            raise ValueError(f"unexpected request {payload}")
        expected = 0 if WITHHELD in text["text"] else 1
        if len(images) != expected:
            raise ValueError(f"{len(images)} images, expected {expected}")
        digest = None
        for part in images:
            url = part["image_url"]["url"]
            if part["type"] != "image_url" or not url.startswith(PNG_PREFIX):
                raise ValueError(f"not a PNG data URI: {url[:40]}")
            image = Image.open(io.BytesIO(base64.b64decode(url[len(PNG_PREFIX) :], validate=True)))
            if image.format != "PNG":
                raise ValueError(f"image format {image.format}")
            digest = pixel_digest(image)
        return {
            "key": (text["text"], digest),
            "model": payload["model"],
            "max_tokens": payload.get("max_tokens"),
        }


@contextmanager
def serve(stub: Stub) -> Iterator[str]:
    """Run the stub on 127.0.0.1 (a free port) in a thread; yield its base URL."""

    def respond(path: str, headers: dict[str, str], body: bytes) -> tuple[int, object, dict[str, str]]:
        status, answer = stub.handle(path, headers, body)
        return status, answer, {}

    with json_server(respond) as base:
        yield base


# In-process tests on the small fixture folder.


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    return write_hub_folder(tmp_path_factory.mktemp("hub"))


def make_docs(hub: Path, config: str, prompt=spinebench_tasks.prompt_image) -> list:
    """Docs as lighteval hands them to a model (id, task name and generation size set)."""
    docs = []
    for index, row in enumerate(datasets.load_dataset(str(hub), config, split="test")):
        doc = prompt(row, f"spinebench:{config}|0")
        doc.id, doc.task_name = str(index), f"spinebench:{config}|0"
        doc.generation_size = spinebench_tasks.GENERATION_SIZE["paper"]
        docs.append(doc)
    return docs


def make_model(monkeypatch, tmp_path: Path, base: str, **env: str) -> OpenAIModel:
    from lighteval.models.custom.custom_model import CustomModelConfig

    settings = {
        "SPINEBENCH_API_BASE": base,
        "SPINEBENCH_API_MODEL": SERVED,
        "SPINEBENCH_API_KEY": SECRET,
        "SPINEBENCH_API_BACKOFF": "0.01",
        **env,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    config = CustomModelConfig(
        model_name="openai", model_definition_file_path=str(MODEL_FILE), cache_dir=str(tmp_path / "cache")
    )
    return OpenAIModel(config)


def scores(docs: list, responses: list) -> list[dict[str, float]]:
    return [
        spinebench_tasks.SpineBenchScore().compute(doc, response) for doc, response in zip(docs, responses)
    ]


def all_right(figures: dict[str, float]) -> bool:
    return all(value == (0.0 if name.startswith("parse_fail") else 1.0) for name, value in figures.items())


def test_replies_keep_order_overlap_and_come_from_cache_the_second_time(hub, tmp_path, monkeypatch):
    docs = make_docs(hub, "full") + make_docs(hub, "mini", spinebench_tasks.prompt_text_only)

    def out_of_order(call: int) -> float:  # later calls may finish first
        return 0.1 + 0.05 * ((7 * call) % 5)

    stub = Stub(gold_table(hub, "full"), delay=out_of_order)
    with serve(stub) as base:
        model = make_model(monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="4")
        responses = model.greedy_until(docs)
        assert len(stub.requests) == len(docs)
        again = model.greedy_until(docs)
        model.cleanup()
    assert stub.violations == []
    assert len(stub.requests) == len(docs)  # the second pass asked nothing: lighteval's cache answered
    assert stub.max_in_flight == 4
    image_docs = [doc for doc in docs if doc.images]
    assert all(all_right(figures) for figures in scores(image_docs, responses))
    assert [r.text for r in again] == [r.text for r in responses]
    assert sum(request["key"][1] is None for request in stub.requests) == len(docs) - len(image_docs)
    first = stub.requests[0]
    assert (first["model"], first["max_tokens"]) == (SERVED, spinebench_tasks.GENERATION_SIZE["paper"])
    assert first["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_concurrency_one_sends_one_at_a_time(hub, tmp_path, monkeypatch):
    docs = make_docs(hub, "mini")
    stub = Stub(gold_table(hub, "mini"), delay=lambda call: 0.05)
    with serve(stub) as base:
        model = make_model(
            monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="1", SPINEBENCH_API_MAX_TOKENS="64"
        )
        assert all(all_right(figures) for figures in scores(docs, model.greedy_until(docs)))
    assert stub.max_in_flight == 1
    assert {request["max_tokens"] for request in stub.requests} == {64}


def test_retries_500_429_and_timeouts(hub, tmp_path, monkeypatch):
    docs = make_docs(hub, "mini")[:2]
    stub = Stub(gold_table(hub, "mini"), script=[500, 429, 503], delay=lambda call: 3.0 if call == 3 else 0.0)
    with serve(stub) as base:
        model = make_model(
            monkeypatch,
            tmp_path,
            base,
            SPINEBENCH_API_CONCURRENCY="1",
            SPINEBENCH_API_RETRIES="4",
            SPINEBENCH_API_TIMEOUT="1",
        )
        responses = model.greedy_until(docs)
    assert all(all_right(figures) for figures in scores(docs, responses))
    assert len(stub.requests) == len(docs) + 4  # 3 scripted errors and 1 timeout (call 3), each retried


def test_failed_item_scores_as_parse_failure_and_only_it_is_retried(hub, tmp_path, monkeypatch, caplog):
    docs = make_docs(hub, "mini")
    stub = Stub(gold_table(hub, "mini"), script=[500, 502])  # the first item fails both attempts
    with serve(stub) as base:
        model = make_model(
            monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="1", SPINEBENCH_API_RETRIES="1"
        )
        with caplog.at_level(logging.WARNING, logger="evaluation.openai_model"):
            responses = model.greedy_until(docs)
        assert responses[0].text == [""]
        first, *rest = scores(docs, responses)
        assert first["parse_fail_dis" if "acc_dis" in first else "parse_fail_loc"] == 1.0
        assert all(all_right(figures) for figures in rest)
        assert f"1 of {len(docs)} requests failed" in caplog.text and "HTTP 502" in caplog.text
        assert SECRET not in caplog.text

        sent = len(stub.requests)
        assert all(all_right(figures) for figures in scores(docs, model.greedy_until(docs)))
    assert len(stub.requests) == sent + 1
    assert stub.requests[-1]["key"] == stub.requests[0]["key"]


def test_refused_key_stops_the_run_without_showing_it(hub, tmp_path, monkeypatch):
    stub = Stub(gold_table(hub, "mini"), script=[401] * 100)
    with serve(stub) as base:
        model = make_model(monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="1")
        with pytest.raises(EndpointError, match="HTTP 401") as raised:
            model.greedy_until(make_docs(hub, "mini"))
    assert len(stub.requests) == 1
    assert SECRET not in str(raised.value)


def completion(content, finish_reason="stop") -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}]}


def test_null_or_empty_content_is_a_failed_request_retried_on_rerun(hub, tmp_path, monkeypatch, caplog):
    docs = make_docs(hub, "mini")[:3]
    # item 0: null content twice; item 1: blank content twice; item 2 answers (no retries left for 0, 1)
    stub = Stub(gold_table(hub, "mini"), script=[completion(None), completion(None), completion("  \n"),
                                                completion("")])
    with serve(stub) as base:
        model = make_model(
            monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="1", SPINEBENCH_API_RETRIES="1"
        )
        with caplog.at_level(logging.WARNING, logger="evaluation.openai_model"):
            responses = model.greedy_until(docs)
        assert [response.text for response in responses[:2]] == [[""], [""]]
        assert [response.finish_reason for response in responses] == ["failed", "failed", "stop"]
        assert "2 of 3 requests failed" in caplog.text and "empty reply" in caplog.text
        sent = len(stub.requests)
        again = model.greedy_until(docs)  # only the two failed items are asked again, and now answer
    assert len(stub.requests) == sent + 2
    assert all(all_right(figures) for figures in scores(docs, again))


def test_reply_cut_by_the_budget_is_kept_with_its_finish_reason(hub, tmp_path, monkeypatch):
    docs = make_docs(hub, "mini")[:2]
    script = [completion(None, "length"), completion("The disc", "length")]
    stub = Stub(gold_table(hub, "mini"), script=script)
    with serve(stub) as base:
        model = make_model(monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="1")
        first = model.greedy_until(docs)
        again = model.greedy_until(docs)  # from lighteval's cache, finish reasons included
    assert len(stub.requests) == 2
    for responses in (first, again):
        assert [(r.text, r.finish_reason) for r in responses] == [([""], "length"), (["The disc"], "length")]


def test_failing_endpoint_stops_after_a_streak_and_keeps_earlier_replies(hub, tmp_path, monkeypatch):
    docs = make_docs(hub, "full") + make_docs(hub, "mini")
    answers = gold_table(hub, "full")
    stub = Stub(answers, script=[200] * 3 + [500] * 100)
    with serve(stub) as base:
        model = make_model(
            monkeypatch, tmp_path, base, SPINEBENCH_API_CONCURRENCY="1", SPINEBENCH_API_RETRIES="0"
        )
        with pytest.raises(EndpointError, match="10 requests in a row failed"):
            model.greedy_until(docs)
        assert len(stub.requests) == 3 + 10
    healthy = Stub(answers)
    with serve(healthy) as base:
        model = make_model(monkeypatch, tmp_path, base)
        assert all(all_right(figures) for figures in scores(docs, model.greedy_until(docs)))
    assert len(healthy.requests) == len(docs) - 3


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "set SPINEBENCH_API_BASE"),
        ({"SPINEBENCH_API_BASE": "http://h/v1", "SPINEBENCH_API_RETRIES": "x"}, "SPINEBENCH_API_RETRIES='x'"),
        ({"SPINEBENCH_API_BASE": "http://h/v1", "SPINEBENCH_API_CONCURRENCY": "0"}, "at least 1"),
    ],
)
def test_settings_errors_are_explicit(monkeypatch, env, message):
    for name in [name for name in os.environ if name.startswith("SPINEBENCH_API_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings.from_env(default_model="openai")


def test_settings_defaults_and_repr_hides_the_key(monkeypatch):
    monkeypatch.setenv("SPINEBENCH_API_BASE", "http://a:8000/v1/, http://b:8000/v1")
    monkeypatch.setenv("SPINEBENCH_API_KEY", SECRET)
    for name in ("MODEL", "CONCURRENCY", "TIMEOUT", "RETRIES", "BACKOFF", "MAX_TOKENS"):
        monkeypatch.delenv(f"SPINEBENCH_API_{name}", raising=False)
    settings = Settings.from_env(default_model="gpt-4o")
    assert settings.bases == ("http://a:8000/v1", "http://b:8000/v1")
    assert (settings.model, settings.concurrency, settings.max_tokens) == ("gpt-4o", 8, None)
    assert SECRET not in repr(settings)


def lighteval_openai(hub: Path, tmp_path: Path, base: str, task: str = "spinebench:mini|0"):
    command = [
        str(Path(sys.executable).with_name("lighteval")), "custom", "openai", str(MODEL_FILE), task,
        "--custom-tasks", str(TASK_FILE), "--output-dir", str(tmp_path / "out"), "--save-details",
    ]
    env = {
        **os.environ, **OFFLINE, "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
        "SPINEBENCH_REPO": str(hub), "SPINEBENCH_API_BASE": base, "SPINEBENCH_API_MODEL": SERVED,
        "SPINEBENCH_API_KEY": SECRET, "SPINEBENCH_API_CONCURRENCY": "8",
    }
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("status, hint", [(401, "check SPINEBENCH_API_KEY"), (403, "has no access")])
def test_refused_key_ends_the_command_with_one_line_and_a_hint(hub, tmp_path, status, hint):
    stub = Stub(gold_table(hub, "mini"), script=[status] * 100)
    with serve(stub) as base:
        done = lighteval_openai(hub, tmp_path, base)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and SECRET not in done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the endpoint stopped the run")
    assert f"HTTP {status}" in last and hint in last


# The real command line on the exported Hub folder of the session build.


def test_lighteval_custom_cli_scores_one_on_the_export(built, tmp_path):
    hub = shutil.copytree(built.hub, tmp_path / "spinebench")
    answers = gold_table(hub, "mini")
    out = tmp_path / "out"
    command = [
        str(Path(sys.executable).with_name("lighteval")),
        "custom",
        "openai",
        str(MODEL_FILE),
        "spinebench:mini|0",
        "--custom-tasks",
        str(TASK_FILE),
        "--output-dir",
        str(out),
        "--save-details",
    ]
    stub = Stub(answers)
    with serve(stub) as base:
        env = {
            **os.environ,
            **OFFLINE,
            "HOME": str(tmp_path),
            "HF_HOME": str(tmp_path / "hf"),
            "SPINEBENCH_REPO": str(hub),
            "SPINEBENCH_API_BASE": base,
            "SPINEBENCH_API_MODEL": SERVED,
            "SPINEBENCH_API_KEY": SECRET,
            "SPINEBENCH_API_CONCURRENCY": "8",
        }
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr
    assert stub.violations == []
    assert sorted(request["key"] for request in stub.requests) == sorted(answers)  # each item once

    (results_file,) = (out / "results" / SERVED).glob("results_*.json")
    figures = json.loads(results_file.read_text())["results"]["spinebench:mini|0"]
    assert {name: figures[name] for name in spinebench_tasks.HIGHER_IS_BETTER} == {
        name: 1.0 if better else 0.0 for name, better in spinebench_tasks.HIGHER_IS_BETTER.items()
    }
    assert (tmp_path / ".cache" / "huggingface" / "lighteval" / SERVED).is_dir()  # lighteval's cache, in HOME
