"""The endpoint client's retry rules, one request at a time against a scripted server on 127.0.0.1.

What is retried (timeouts aside): 408, 409, 425, 429 and every 5xx; any other 4xx is the request's own
fault and is not sent again. The wait before retry n (0-based) is BACKOFF * 2**n seconds, at most 60, unless
the reply carries a numeric Retry-After header (also at most 60). The client's sleep is replaced by a
recorder, so the schedule is asserted exactly and no test waits for real.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from evaluation import openai_model
from evaluation.openai_model import ChatClient, Failure, Reply, Settings
from loopback import json_server

OK = (200, {}, {"choices": [{"message": {"content": "B"}, "finish_reason": "stop"}]})


@contextmanager
def scripted(replies: list[tuple[int, dict[str, str], dict]]) -> Iterator[tuple[str, list[str]]]:
    """Serve the replies in order (then 200s) on a free loopback port; yield the base URL and the paths hit."""
    hits: list[str] = []
    lock = threading.Lock()

    def respond(path: str, headers: dict[str, str], body: bytes) -> tuple[int, object, dict[str, str]]:
        with lock:
            status, extra, answer = replies[len(hits)] if len(hits) < len(replies) else OK
            hits.append(path)
        return status, answer, extra

    with json_server(respond) as base:
        yield base, hits


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The seconds the client asked to sleep, in order (it never sleeps)."""
    asked: list[float] = []
    monkeypatch.setattr(openai_model, "time", SimpleNamespace(sleep=asked.append))
    return asked


def ask(base: str, retries: int = 4, backoff: float = 1.0) -> Reply | Failure:
    client = ChatClient(Settings(bases=(base,), model="m", key=None, retries=retries, backoff=backoff))
    try:
        return client.complete(0, {"model": "m", "messages": []})
    finally:
        client.close()


def error(status: int, **headers: str) -> tuple[int, dict[str, str], dict]:
    return status, headers, {"error": {"message": f"status {status}"}}


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_a_client_error_is_not_retried(waits, status):
    with scripted([error(status)] * 5) as (base, hits):
        outcome = ask(base)
    assert isinstance(outcome, Failure) and not outcome.fatal
    assert f"HTTP {status}" in outcome.reason
    assert len(hits) == 1 and waits == []


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_a_retryable_status_is_retried_until_it_answers(waits, status):
    with scripted([error(status)] * 2) as (base, hits):
        outcome = ask(base)
    assert outcome == Reply("B", "stop")
    assert len(hits) == 3 and waits == [1.0, 2.0]


def test_backoff_doubles_from_the_setting_up_to_sixty_seconds(waits):
    with scripted([error(503)] * 7) as (base, hits):
        outcome = ask(base, retries=6, backoff=5.0)
    assert isinstance(outcome, Failure) and "after 6 retries" in outcome.reason
    assert len(hits) == 7
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]  # no sleep after the last attempt


@pytest.mark.parametrize("header, expected", [("7", 7.0), ("0.5", 0.5), ("3600", 60.0)])
def test_a_numeric_retry_after_wins_over_the_backoff(waits, header, expected):
    with scripted([error(429, **{"Retry-After": header}), error(503, **{"Retry-After": header})]) as (base, _):
        outcome = ask(base, backoff=1.0)
    assert outcome == Reply("B", "stop")
    assert waits == [expected, expected]


def test_a_retry_after_date_falls_back_to_the_backoff(waits):
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # the header's other form; the client does not parse dates
    with scripted([error(429, **{"Retry-After": date})] * 2) as (base, _):
        ask(base, backoff=2.0)
    assert waits == [2.0, 4.0]
