"""Score any OpenAI-compatible chat endpoint (vLLM, SGLang, a hosted API) with images.

lighteval 0.13's own API backends drop images, so this is a `lighteval custom` model class:

    SPINEBENCH_API_BASE=http://localhost:8000/v1 SPINEBENCH_API_MODEL=Qwen/Qwen2.5-VL-7B-Instruct \\
    lighteval custom openai evaluation/openai_model.py "spinebench:mini|0" \\
        --custom-tasks evaluation/spinebench_tasks.py --output-dir results --save-details

Configuration (environment; the `lighteval custom` command line has no room for model arguments):

- SPINEBENCH_API_BASE (required): the base URL ending in `/v1`; several, comma-separated, spread the
  items round-robin over independent servers (one vLLM per node), and a retry moves to the next one.
- SPINEBENCH_API_MODEL: the model name the server expects (default: the NAME given to `lighteval
  custom`). Results, details and lighteval's prediction cache are filed under this name.
- SPINEBENCH_API_KEY: sent as `Authorization: Bearer ...`; optional (vLLM without --api-key needs
  none); never printed or logged.
- SPINEBENCH_API_CONCURRENCY: requests in flight at once (default 8).
- SPINEBENCH_API_TIMEOUT: seconds per attempt (default 120).
- SPINEBENCH_API_RETRIES: retries after a timeout, connection error, 408/409/425/429 or 5xx (default 4).
- SPINEBENCH_API_BACKOFF: seconds before the first retry, doubled for each next one up to 60 s; a
  numeric `Retry-After` header wins (default 1).
- SPINEBENCH_API_MAX_TOKENS: `max_tokens` of each request (default: the task's generation size: 4096
  for the paper's prompt, which asks for reasoning first, 512 for the `_direct` tasks).

Each request is one user message, `temperature` 0: the prompt text first, then each image of the Doc
as a base64 PNG data URI in an `image_url` part (none for `mini_text`). That is the order lighteval's
`--vision-model` path uses and the paper's protocol (image after the text). No system message, unless
a system_prompt is set in the model config (Python API only).

Failure policy. A 200 whose message content is null or empty is a failed request, like a 5xx
(retried, then counted), unless its finish reason is "length": then the budget was spent (on reasoning,
say) and the empty reply is the model's, cached and counted as cut by the budget. An item whose request
still fails after the last retry, or is refused as malformed (another 4xx), gets an empty reply: it
scores as a parse failure (`parse_fail_dis`/`parse_fail_loc`) and the run goes on. Failures are counted
and logged with their reasons and are NOT written to the prediction cache, so running the same command
again sends only them. The run stops with EndpointError (one line and a hint on the terminal, no
traceback) when the endpoint refuses the configuration (401, 403, 404: key, model name or URL) or when 10
requests in a row have failed (the server is down); the replies received so far are cached first, so a
re-run resumes.

Each reply keeps the endpoint's finish reason (`model_response.finish_reason` in lighteval's details;
`failed` for an item whose request failed): the report counts the replies cut by the budget ("length")
and the failed requests.

Caching: lighteval's prediction cache (`~/.cache/huggingface/lighteval/<model>/<hash>/`), keyed by the
model name, max tokens, temperature and task config; not by the URL, so two different models served
under one name share it: give each its own name (`vllm serve ... --served-model-name`).
"""

# No `from __future__ import annotations`: lighteval executes this file without registering it in
# sys.modules, and dataclasses then cannot resolve string annotations.
import base64
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
from lighteval.models.abstract_model import LightevalModel
from lighteval.models.custom.custom_model import CustomModelConfig
from lighteval.models.model_input import GenerationParameters
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.requests import Doc, SamplingMethod
from lighteval.utils.cache_management import SampleCache, TaskID
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lighteval loads this file by path; our modules live beside it
    sys.path.insert(0, str(ROOT))

from evaluation.generation_only import GenerationOnly  # noqa: E402

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx
FATAL_STATUS = frozenset({401, 403, 404})  # the same for every item: wrong key, model name or URL
FAILURE_STREAK = 10  # this many failed items in a row: the endpoint is down, stop
MAX_BACKOFF = 60.0
GENERATIVE = SamplingMethod.GENERATIVE


HINTS = {
    401: "the endpoint refused the key: check {prefix}_KEY",
    403: "the key has no access to this model or endpoint: check {prefix}_KEY and {prefix}_MODEL",
    404: "is {prefix}_BASE the URL ending in /v1, and {prefix}_MODEL a model it serves?",
}


class EndpointError(SystemExit):
    """The endpoint refuses the configuration or keeps failing: continuing would only score failures.

    A SystemExit, so that `lighteval custom` ends with this one line (exit status 1), not a traceback.
    """


@dataclass(frozen=True)
class Settings:
    """The <prefix>_* environment, read once: SPINEBENCH_API_* (the model) or SPINEBENCH_JUDGE_* (judge)."""

    bases: tuple[str, ...]
    model: str
    key: str | None = field(repr=False)
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 1.0
    max_tokens: int | None = None
    prefix: str = "SPINEBENCH_API"

    @classmethod
    def from_env(cls, default_model: str | None, prefix: str = "SPINEBENCH_API") -> "Settings":
        bases = tuple(base.strip().rstrip("/") for base in os.environ.get(f"{prefix}_BASE", "").split(","))
        if not all(bases):
            raise ValueError(f"set {prefix}_BASE to the endpoint's base URL, e.g. http://localhost:8000/v1")
        model = os.environ.get(f"{prefix}_MODEL") or default_model
        if not model:
            raise ValueError(f"set {prefix}_MODEL to the model name the endpoint serves")
        max_tokens = _env_number(f"{prefix}_MAX_TOKENS", 0, int, minimum=1)
        return cls(
            bases=bases,
            model=model,
            key=os.environ.get(f"{prefix}_KEY") or None,
            concurrency=_env_number(f"{prefix}_CONCURRENCY", cls.concurrency, int, minimum=1),
            timeout=_env_number(f"{prefix}_TIMEOUT", cls.timeout, float, minimum=0.001),
            retries=_env_number(f"{prefix}_RETRIES", cls.retries, int, minimum=0),
            backoff=_env_number(f"{prefix}_BACKOFF", cls.backoff, float, minimum=0),
            max_tokens=max_tokens or None,
            prefix=prefix,
        )


def _env_number(name: str, default: float, kind: type, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number ({kind.__name__})") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Failure:
    """Why an item got no reply; `fatal` stops the run."""

    reason: str
    fatal: bool = False


@dataclass(frozen=True)
class Reply:
    """A completion: its text and why generation stopped (`stop`, `length`, ...; None if not said)."""

    text: str
    finish_reason: str | None = None


@dataclass
class EndpointResponse(ModelResponse):
    """lighteval's ModelResponse plus the endpoint's finish reason, saved in the details and the cache."""

    finish_reason: str | None = None


class EndpointCache(SampleCache):
    """lighteval's prediction cache, reading entries back with their finish reason."""

    def _load_sample(self, sample) -> EndpointResponse:
        if isinstance(sample, pd.Series):
            sample = json.loads(sample.to_json())
        return EndpointResponse(**sample["sample"])


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_payload(doc: Doc, settings: Settings, system_prompt: str | None) -> dict:
    """The chat-completions request for one Doc: its text, then its images."""
    content = [{"type": "text", "text": doc.query}]
    content += [
        {"type": "image_url", "image_url": {"url": png_data_uri(image)}} for image in doc.images or ()
    ]
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    payload = {
        "model": settings.model,
        "messages": [*messages, {"role": "user", "content": content}],
        "temperature": 0,
    }
    max_tokens = settings.max_tokens or doc.generation_size
    if max_tokens:
        payload["max_tokens"] = max_tokens
    if doc.stop_sequences:
        payload["stop"] = list(doc.stop_sequences)
    return payload


class ChatClient:
    """POSTs chat completions from many threads, with retries and a stop switch shared by all of them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.key}"} if settings.key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=settings.timeout,
            limits=httpx.Limits(
                max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
            ),
        )
        self._lock = threading.Lock()
        self._streak = 0
        self._stopped: Failure | None = None

    def close(self) -> None:
        self._http.close()

    def complete(self, index: int, payload: dict) -> Reply | Failure:
        """The reply to item `index`, or why there is none; never raises for the endpoint's errors."""
        if self._stopped:
            return self._stopped
        outcome = self._post(index, payload)
        if isinstance(outcome, Failure) and self.settings.key:  # in case a server echoes the key
            outcome = Failure(
                outcome.reason.replace(self.settings.key, f"<{self.settings.prefix}_KEY>"), outcome.fatal
            )
        with self._lock:
            self._streak = self._streak + 1 if isinstance(outcome, Failure) else 0
            if isinstance(outcome, Failure) and not self._stopped:
                if outcome.fatal:
                    self._stopped = outcome
                elif self._streak >= FAILURE_STREAK:
                    self._stopped = Failure(
                        f"{FAILURE_STREAK} requests in a row failed, last: {outcome.reason}", fatal=True
                    )
        return outcome

    def _post(self, index: int, payload: dict) -> Reply | Failure:
        settings = self.settings
        for attempt in range(settings.retries + 1):
            url = f"{settings.bases[(index + attempt) % len(settings.bases)]}/chat/completions"
            wait = None
            try:
                response = self._http.post(url, json=payload)
            except httpx.TransportError as error:  # timeouts, refused or dropped connections
                problem = f"{type(error).__name__} ({error}) from {url}"
            else:
                status = response.status_code
                problem = f"HTTP {status} from {url}: {_excerpt(response)}"
                if status == 200:
                    reply = _reply(response)
                    if isinstance(reply, Reply):
                        return reply
                    problem = f"{reply} from {url}: {_excerpt(response)}"
                elif status in FATAL_STATUS:
                    hint = HINTS[status].format(prefix=settings.prefix)
                    return Failure(f"{problem} -- {hint}", fatal=True)
                elif status not in RETRY_STATUS and status < 500:
                    return Failure(problem)
                else:
                    wait = _retry_after(response)
            if attempt == settings.retries or self._stopped:
                break
            time.sleep(wait if wait is not None else min(settings.backoff * 2**attempt, MAX_BACKOFF))
        return Failure(f"{problem} (after {attempt} retries)")


def _reply(response: httpx.Response) -> Reply | str:
    """The completion in a 200 response, or what is wrong with it (then the request counts as failed)."""
    try:
        choice = response.json()["choices"][0]
        content, finish = choice["message"]["content"], choice.get("finish_reason")
    except (ValueError, LookupError, TypeError, AttributeError):
        return "malformed reply"
    if not isinstance(content, (str, type(None))):
        return "malformed reply"
    if not (content or "").strip() and finish != "length":  # an empty reply the budget did not cause
        return "empty reply (content null or blank)"
    return Reply(content or "", finish)


def _excerpt(response: httpx.Response) -> str:
    """The start of a response body on one line (a failure is reported as one line)."""
    return " ".join(response.text[:300].split())


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), MAX_BACKOFF)
    except (KeyError, ValueError):
        return None


class OpenAIModel(GenerationOnly, LightevalModel):
    """Generation through an OpenAI-compatible endpoint; loglikelihood is not offered by chat APIs."""

    def __init__(self, config: CustomModelConfig):
        self.settings = Settings.from_env(default_model=config.model_name)
        # File results and cache under the served model, with what changes its replies in the cache key.
        self.config = config.model_copy(
            update={
                "model_name": self.settings.model,
                "generation_parameters": GenerationParameters(
                    temperature=0, max_new_tokens=self.settings.max_tokens
                ),
            }
        )
        self._cache = EndpointCache(self.config)  # the pipeline hands it the task registry
        self.client = ChatClient(self.settings)
        logger.info("openai model: %s at %s", self.settings.model, ", ".join(self.settings.bases))

    def cleanup(self) -> None:
        self.client.close()

    def greedy_until(self, docs: list[Doc]) -> list[ModelResponse]:
        """Replies in the order of `docs`: from lighteval's cache when there, else from the endpoint."""
        todo, _ = self._cache.get_samples_to_process_and_cache(docs, GENERATIVE)
        outcomes = self._ask(todo)
        fresh = {
            id(doc): EndpointResponse(
                input=doc.query, text=[outcome.text], finish_reason=outcome.finish_reason
            )
            if isinstance(outcome, Reply)
            else EndpointResponse(input=doc.query, text=[""], finish_reason="failed")
            for doc, outcome in zip(todo, outcomes)
        }
        answered = [doc for doc, outcome in zip(todo, outcomes) if isinstance(outcome, Reply)]
        self._store(answered, [fresh[id(doc)] for doc in answered])
        self._report([outcome for outcome in outcomes if isinstance(outcome, Failure)], len(todo))
        rest = [doc for doc in docs if id(doc) not in fresh]
        cached = iter(self._cache.get_samples_from_cache(rest, self._task_ids(rest), GENERATIVE))
        return [fresh[id(doc)] if id(doc) in fresh else next(cached) for doc in docs]

    def _ask(self, docs: Sequence[Doc]) -> list[Reply | Failure]:
        def one(index: int) -> Reply | Failure:  # the payload is built in the worker: images stay out of RAM
            return self.client.complete(
                index, chat_payload(docs[index], self.settings, self.config.system_prompt)
            )

        with ThreadPoolExecutor(self.settings.concurrency) as pool:
            return list(tqdm(pool.map(one, range(len(docs))), total=len(docs), desc=self.settings.model))

    def _store(self, docs: list[Doc], responses: list[ModelResponse]) -> None:
        if docs:
            self._cache.cache_samples(docs, responses, self._task_ids(docs), GENERATIVE)

    def _task_ids(self, docs: Sequence[Doc]) -> set[TaskID]:
        return {self._cache.get_task_id(doc.task_name, GENERATIVE) for doc in docs}

    def _report(self, failures: list[Failure], sent: int) -> None:
        stop = next((failure for failure in failures if failure.fatal), None)
        if stop:
            raise EndpointError(
                f"error: the endpoint stopped the run (replies so far are cached): {stop.reason}"
            )
        if failures:
            reasons = sorted({failure.reason for failure in failures})
            logger.warning(
                "%d of %d requests failed; they score as parse failures and are not cached, so running the "
                "same command again retries only them. Reasons: %s",
                len(failures),
                sent,
                " | ".join(reasons[:5]),
            )
