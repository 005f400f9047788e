"""Chat completions from an OpenAI-compatible endpoint, many at once, cached, counted and
cancellable.

The ``openai`` client speaks the protocol; its own retries are off, and one retry layer
(tenacity) wraps each HTTP attempt: 408, 409, 429, 5xx, timeouts, dropped connections and
answers that are not a chat completion are retried with exponential backoff (the server's
``Retry-After`` when it sends one), up to ``max_retries`` times. Every attempt, failed or not,
counts against ``request_budget``, which the processes of a run share (:class:`RequestBudget`).

A prompt the provider's content filter blocks (a 400 ``content_filter``, or an answer that
ends with ``finish_reason: content_filter``) is the defence working, not an error: it comes
back as :data:`BLOCKED`, counted in ``blocked``, cached like any answer, and judges score it
safe (:func:`sparring.judges.base.blocked_is_safe`).

A request still failing after its retries, or one the budget cannot pay for, raises
:class:`~sparring.errors.EndpointError`; Ctrl-C cancels the requests not yet sent and stops.
Every answer received before either stays in the cache. Error messages name the status and
the error's type and code, never the server's body (it can echo prompts or credentials).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparring.endpoints.cache import RequestBudget, ResponseCache, request_key
from sparring.endpoints.policy import (
    RateLimiter,
    Unreadable,
    backoff,
    content_filtered,
    describe,
    retried,
)
from sparring.endpoints.spec import EndpointSpec, is_loopback
from sparring.errors import ConfigError, EndpointError

log = logging.getLogger(__name__)

#: the text of an answer the provider's content filter blocked (judged safe, counted)
BLOCKED = "[blocked by the provider's content filter]"

_STATS_KEY = "__stats__"
#: ``requests``: answers received; ``attempts``: HTTP attempts made (retries and failures
#: included: what the budget counts); ``failures``: attempts that failed or came back
#: unreadable; ``blocked``: prompts the content filter refused.
STAT_NAMES = (
    "requests",
    "attempts",
    "cache_hits",
    "failures",
    "blocked",
    "prompt_tokens",
    "completion_tokens",
    "cost",
)


class Cancelled(EndpointError):
    """The user stopped the run (Ctrl-C): requests not yet sent were dropped."""


@dataclass
class Completion:
    """One answer: its text, the first token's top log-probs when the server sent them
    (token -> log-prob), its token counts, whether the content filter blocked it, and whether it
    came from the cache."""

    text: str
    first_token_logprobs: dict[str, float] | None
    prompt_tokens: int
    completion_tokens: int
    blocked: bool = False
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "first_token_logprobs": self.first_token_logprobs,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "blocked": self.blocked,
        }


class EndpointClient:
    """Chat completions from one endpoint; ``cache_path`` keeps answers across resumes and
    ``budget_path`` holds the request budget the run's processes share (in memory, this
    process's alone, when unset)."""

    def __init__(
        self,
        spec: EndpointSpec,
        *,
        cache_path: Path | None = None,
        name: str = "",
        budget_path: Path | None = None,
    ):
        from openai import OpenAI

        self.spec = spec
        self.name = name or spec.model
        key = _env(spec.api_key_env, self.name, "api_key_env") if spec.api_key_env else "EMPTY"
        headers = dict(spec.headers)
        for header, env in spec.headers_env.items():
            headers[header] = _env(env, self.name, f"headers_env[{header!r}]")
        secret = bool(spec.api_key_env or spec.headers_env)
        if secret and spec.base_url.startswith("http://") and not is_loopback(spec.base_url):
            log.warning(
                "%s: the API key goes over plain http to a host that is not this machine; use "
                "https",
                self.name,
            )
        self._client = OpenAI(
            base_url=spec.base_url,
            api_key=key,
            max_retries=0,  # the one retry layer is ours: every attempt is counted
            timeout=spec.timeout_s,
            default_headers=headers or None,
        )
        self.cache = ResponseCache(cache_path)
        # without a shared file the budget lives beside the answers: a resumed run goes on
        # counting from what it spent
        self.budget = RequestBudget(spec.request_budget, budget_path or cache_path, self.name)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._limiter = RateLimiter(
            spec.max_requests_per_minute, spec.max_tokens_per_minute, self._stop
        )
        saved = self.cache.get(_STATS_KEY) or {}
        self.stats: dict[str, float] = {k: saved.get(k, 0) for k in STAT_NAMES}
        self.session = {k: 0 for k in ("requests", "cache_hits")}  # this process only

    # -- public ----------------------------------------------------------------------------------
    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_logprobs: int = 0,
        draws: Sequence[str | None] | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in order. ``draws`` tells identical requests apart
        when they are meant to be sampled anew (a step and row of a run); None: the same request
        always gets the same cached answer (a judge at temperature 0).

        The first request that fails for good stops the batch: requests not yet started are
        dropped (not paid for), those in flight finish and are cached, and the error is raised.
        Ctrl-C does the same and raises :class:`Cancelled`."""
        draws = list(draws) if draws is not None else [None] * len(conversations)
        if len(draws) != len(conversations):
            raise ValueError("draws must match conversations")
        params = {
            "model": self.spec.model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_logprobs": top_logprobs,
        }
        server = {"base_url": self.spec.base_url, **params}
        if self.spec.seed is not None:
            server["seed"] = self.spec.seed
        keys = [
            request_key({**server, "messages": conv, "draw": draw})
            for conv, draw in zip(conversations, draws, strict=True)
        ]
        unique = dict(zip(keys, conversations, strict=True))  # one request per distinct key
        answers: dict[str, Completion] = {}
        pool = ThreadPoolExecutor(max_workers=self.spec.max_concurrency)
        futures = {pool.submit(self._one, k, conv, params): k for k, conv in unique.items()}
        try:
            while True:  # in short waits: Ctrl-C is seen at once, not when the batch ends
                done, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed or not pending:
                    break
            if failed:
                self._stop.set()  # nothing more is sent; what is in flight finishes
                for f in pending:
                    f.cancel()
                wait(pending)
                raise failed[0].exception()
            answers = {futures[f]: f.result() for f in done}
        except KeyboardInterrupt:  # the block below drops what has not started and saves
            self._stop.set()
            raise Cancelled(
                f"{self.name}: stopped by the user; requests not yet sent were dropped, the "
                "answers received are cached"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._stop.clear()
            self._save_stats()
        return [answers[k] for k in keys]

    def close(self) -> None:
        self._save_stats()
        self.cache.close()
        self.budget.close()
        self._client.close()

    # -- one request -----------------------------------------------------------------------------
    def _one(self, key: str, conversation: list[dict[str, str]], params: dict) -> Completion:
        hit = self.cache.get(key)
        if hit is not None:
            with self._lock:
                self.stats["cache_hits"] += 1
                self.session["cache_hits"] += 1
            return Completion(**hit, cached=True)
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt

        retrying = Retrying(
            stop=stop_after_attempt(self.spec.max_retries + 1),
            wait=backoff,
            retry=retry_if_exception(retried),
            sleep=self._sleep,
            reraise=False,
        )
        try:
            completion = retrying(self._attempt, key, conversation, params)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise EndpointError(
                f"{self.name} at {self.spec.base_url} failed after {self.spec.max_retries} "
                f"retries: {describe(last)}"
            ) from None
        except Unreadable as exc:  # not retried only when max_retries is 0
            raise EndpointError(f"{self.name}: {exc}") from None
        except Exception as exc:
            if isinstance(exc, EndpointError):
                raise
            raise EndpointError(
                f"{self.name} at {self.spec.base_url} refused the request: {describe(exc)}"
            ) from None
        self.cache.put(key, completion.to_json())
        self._save_stats()  # counts survive a kill as the answers do
        return completion

    def _attempt(self, key: str, conversation: list[dict[str, str]], params: dict) -> Completion:
        """One HTTP attempt, paid from the budget before it is sent."""
        import openai

        if self._stop.is_set():
            raise Cancelled(f"{self.name}: stopped before this request was sent")
        tokens = params["max_tokens"] + sum(len(m.get("content") or "") for m in conversation) // 4
        if not self._limiter.acquire(tokens):
            raise Cancelled(f"{self.name}: stopped before this request was sent")
        if not self.budget.reserve():
            raise EndpointError(
                f"{self.name}: the request budget of {self.spec.request_budget} HTTP attempts is "
                "spent (request_budget; retries and failed attempts count); raise it and "
                "resume: answers already received are cached"
            )
        with self._lock:
            self.stats["attempts"] += 1
        kwargs: dict[str, Any] = {
            "model": params["model"],
            "messages": conversation,
            "max_tokens": params["max_tokens"],
            "temperature": params["temperature"],
            "top_p": params["top_p"],
        }
        if params["top_logprobs"]:
            kwargs.update({"logprobs": True, "top_logprobs": params["top_logprobs"]})
        if self.spec.seed is not None:  # the run's seed and the request's own hash
            kwargs["seed"] = (self.spec.seed + int(key[:8], 16)) % 2**31
        try:
            response = self._client.chat.completions.create(**kwargs)
            completion = _read(response)
        except openai.BadRequestError as exc:
            if not content_filtered(exc):
                self._count_failure(describe(exc))
                raise
            completion = Completion(BLOCKED, None, 0, 0, blocked=True)
        except (openai.APIResponseValidationError, ValueError, KeyError, TypeError) as exc:
            self._count_failure(f"unreadable answer: {type(exc).__name__}")
            raise Unreadable(
                f"{self.name} at {self.spec.base_url} sent an answer that is not a chat "
                f"completion ({type(exc).__name__})"
            ) from None
        except openai.APIError as exc:
            self._count_failure(describe(exc))
            raise
        cost = (
            completion.prompt_tokens * self.spec.price_per_1k_prompt_tokens
            + completion.completion_tokens * self.spec.price_per_1k_completion_tokens
        ) / 1000.0
        with self._lock:
            self.stats["requests"] += 1
            self.session["requests"] += 1
            self.stats["blocked"] += completion.blocked
            self.stats["prompt_tokens"] += completion.prompt_tokens
            self.stats["completion_tokens"] += completion.completion_tokens
            self.stats["cost"] += cost
        return completion

    def _sleep(self, seconds: float) -> None:
        """Backoff that Ctrl-C or a failed batch cuts short (the next attempt then stops)."""
        self._stop.wait(seconds)

    def _count_failure(self, what: str) -> None:
        with self._lock:
            self.stats["failures"] += 1
        log.warning("%s: %s", self.name, what)

    def _save_stats(self) -> None:
        with self._lock:
            stats = dict(self.stats)
        self.cache.put(_STATS_KEY, stats)


def _env(variable: str, name: str, field: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(
            f"{name}: the environment variable {variable} ({field}) is not set; export the "
            "endpoint's secret there"
        )
    return value


def _read(response: Any) -> Completion:
    """The parts of a chat completion Sparring uses; ValueError when it has none."""
    if isinstance(response, str | bytes) or not getattr(response, "choices", None):
        raise ValueError("no choices in the answer")
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    if getattr(choice, "finish_reason", None) == "content_filter":
        # the provider cut or withheld the answer: the filter worked; nothing of it is kept
        return Completion(BLOCKED, None, prompt_tokens, completion_tokens, blocked=True)
    text = choice.message.content
    if text is None:  # a refusal field, tokens spent on reasoning: no text
        text = ""
    if not isinstance(text, str):
        raise ValueError("the answer's message content is not text")
    first = None
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if content:
        first = {t.token: float(t.logprob) for t in (content[0].top_logprobs or [])}
        first.setdefault(content[0].token, float(content[0].logprob))
    return Completion(
        text=text,
        first_token_logprobs=first,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
