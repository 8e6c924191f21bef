"""The paper's LLM extraction step, optional: a judge model reads the replies the rules could not.

The paper has Gemini-2.5-Pro extract a candidate answer when a model gives no clear letter. Here any
OpenAI-compatible chat endpoint may play that part, configured like the endpoint model but with
SPINEBENCH_JUDGE_* variables: _BASE (required), _MODEL (required), _KEY (sent as a bearer token, never
printed), _CONCURRENCY, _TIMEOUT, _RETRIES, _BACKOFF (evaluation/openai_model.py says what they do) and
_MAX_TOKENS (default 16: room for `[A, B, C, D, E]`; raise it for a judge that reasons first).

It is used only by the report (`python -m evaluation report ... --judge`), only for replies where
evaluation/extract.py found no answer, and never changes what the rules read: the report shows scores
with and without it. The judge sees the options and the reply (not the gold answer) and must answer with
letters only; its answer (without its reasoning block, if any) is read strictly: `B`, `[B]`, `[B, D]`
with letters of this item's options (one for SDD), or `NONE`. Anything else, a letter beyond the
options, or several letters for SDD counts as no answer: a judge answering garbage cannot add a point.

Calls are cached in a JSON-lines file (one `{"key", "answer"}` per reply), keyed by the judge model, the
judge prompt's version and the item's reply, options and task, so a rerun asks nothing twice. Failed
calls are not cached: a rerun asks them again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from evaluation.extract import answer_part
from spinebench import LETTERS

PREFIX = "SPINEBENCH_JUDGE"
PROMPT_VERSION = 1
MAX_TOKENS = 16
INSTRUCTION = {
    False: "The question has exactly one correct option. Which single option letter does the reply give as "
    "its final answer? Answer with that letter alone, like [B].",
    True: "The question may have several correct options. Which option letters does the reply give as its "
    "final answer? Answer with those letters alone, like [B, D].",
}
_ANSWER = re.compile(r"\s*\[?\s*(?P<letters>[A-Z](?:\s*,\s*[A-Z])*)\s*\]?\s*\.?\s*")
_NONE = re.compile(r"\s*\[?\s*none\s*\]?\s*\.?\s*", re.IGNORECASE)


JUDGE_PROMPT_MARK = "You extract answers from replies to a multiple-choice question"


def judge_prompt(reply: str, options: Sequence[str], multi: bool) -> str:
    listed = "\n".join(f"{letter}: {text}" for letter, text in zip(LETTERS, options))
    return (
        f"{JUDGE_PROMPT_MARK}; you do not answer it yourself.\n\n"
        f"Options:\n{listed}\n\nReply:\n<<<\n{reply}\n>>>\n\n{INSTRUCTION[multi]} If the reply gives no "
        "answer, refuses, or hesitates between options, answer NONE."
    )


def read_answer(answer: str, options: Sequence[str], multi: bool) -> list[str] | None:
    """The judge's answer as sorted valid letters, or None (no answer, or not in the allowed form)."""
    answer = answer_part(answer)
    if _NONE.fullmatch(answer):
        return None
    match = _ANSWER.fullmatch(answer)
    if not match:
        return None
    letters = sorted({letter.strip() for letter in match["letters"].split(",")})
    if not set(letters) <= set(LETTERS[: len(options)]) or (not multi and len(letters) != 1):
        return None
    return letters


@dataclass(frozen=True)
class Verdict:
    """What the judge made of one reply: letters, or None with `answered` telling garbage from failure."""

    letters: list[str] | None
    answered: bool  # False: the call failed (not cached; a rerun asks again)


class Judge:
    """Asks the judge endpoint about many replies at once, through the cache."""

    def __init__(self, cache_path: Path):
        from evaluation.openai_model import ChatClient, Settings  # lighteval loads only when judging

        self.settings = Settings.from_env(default_model=None, prefix=PREFIX)
        self.client = ChatClient(self.settings)
        self.cache_path = cache_path
        self.cache = self._load()

    def _load(self) -> dict[str, str]:
        if not self.cache_path.exists():
            return {}
        cache = {}
        for number, line in enumerate(self.cache_path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                entry = json.loads(line)
                cache[entry["key"]] = entry["answer"]
            except (ValueError, KeyError, TypeError):
                message = f"{self.cache_path}:{number}: not a judge cache line; delete the file"
                raise ValueError(message) from None
        return cache

    def key(self, reply: str, options: Sequence[str], multi: bool) -> str:
        text = json.dumps([self.settings.model, PROMPT_VERSION, reply, list(options), multi])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def verdicts(self, items: Sequence[tuple[str, Sequence[str], bool]]) -> list[Verdict]:
        """One verdict per (reply, options, multi), asking the endpoint only what the cache lacks."""
        from evaluation.openai_model import EndpointError, Failure

        keys = [self.key(*item) for item in items]
        todo = sorted({key: index for index, key in enumerate(keys) if key not in self.cache}.items())

        def ask(index: int):
            reply, options, multi = items[index]
            payload = {
                "model": self.settings.model,
                "messages": [{"role": "user", "content": judge_prompt(reply, options, multi)}],
                "temperature": 0,
                "max_tokens": self.settings.max_tokens or MAX_TOKENS,
            }
            return self.client.complete(index, payload)

        with ThreadPoolExecutor(self.settings.concurrency) as pool:
            outcomes = list(pool.map(ask, [index for _, index in todo]))
        fresh = {
            key: outcome.text for (key, _), outcome in zip(todo, outcomes) if not isinstance(outcome, Failure)
        }
        if fresh:
            with self.cache_path.open("a", encoding="utf-8") as cache:
                cache.writelines(json.dumps({"key": k, "answer": text}) + "\n" for k, text in fresh.items())
            self.cache.update(fresh)
        fatal = next((out for out in outcomes if isinstance(out, Failure) and out.fatal), None)
        if fatal:
            raise EndpointError(f"error: the judge endpoint stopped (answers so far cached): {fatal.reason}")
        return [
            Verdict(read_answer(self.cache[key], options, multi), True)
            if key in self.cache
            else Verdict(None, False)
            for key, (_, options, multi) in zip(keys, items)
        ]

    def close(self) -> None:
        self.client.close()
