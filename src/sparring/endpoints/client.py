"""Chat completions from an OpenAI-compatible endpoint, many at once, cached and counted.

The ``openai`` client does the protocol and retries 429, 5xx, timeouts and dropped connections
with exponential backoff (``max_retries``); answers it cannot read (malformed JSON, no choices)
are retried here the same number of times. A request still failing after that, or one that
would exceed ``request_budget``, raises :class:`~sparring.errors.EndpointError`; every answer
received before it stays in the cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparring.endpoints.cache import ResponseCache, request_key
from sparring.endpoints.spec import EndpointSpec
from sparring.errors import ConfigError, EndpointError

log = logging.getLogger(__name__)

_STATS_KEY = "__stats__"
#: ``requests``: answers received and paid for; ``failures``: requests that failed (after the
#: client's own retries) or came back unreadable.
STAT_NAMES = ("requests", "cache_hits", "failures", "prompt_tokens", "completion_tokens", "cost")


@dataclass
class Completion:
    """One answer: its text, the first token's top log-probs when the server sent them
    (token -> log-prob), its token counts, and whether it came from the cache."""

    text: str
    first_token_logprobs: dict[str, float] | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "first_token_logprobs": self.first_token_logprobs,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class EndpointClient:
    """Chat completions from one endpoint; ``cache_path`` keeps answers across resumes."""

    def __init__(self, spec: EndpointSpec, *, cache_path: Path | None = None, name: str = ""):
        from openai import OpenAI

        self.spec = spec
        self.name = name or spec.model
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise ConfigError(
                    f"{self.name}: the environment variable {spec.api_key_env} (api_key_env) is "
                    "not set; export the endpoint's API key there"
                )
        else:
            key = "EMPTY"  # local servers take any key
        self._client = OpenAI(
            base_url=spec.base_url,
            api_key=key,
            max_retries=spec.max_retries,
            timeout=spec.timeout_s,
        )
        self.cache = ResponseCache(cache_path)
        self._lock = threading.Lock()
        saved = self.cache.get(_STATS_KEY) or {}
        self.stats: dict[str, float] = {k: saved.get(k, 0) for k in STAT_NAMES}
        self.session = {k: 0 for k in ("requests", "cache_hits")}  # this process only
        self._in_flight = 0

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
        always gets the same cached answer (a judge at temperature 0)."""
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
        keys = [
            request_key({**server, "messages": conv, "draw": draw})
            for conv, draw in zip(conversations, draws, strict=True)
        ]
        unique = dict(zip(keys, conversations, strict=True))  # one request per distinct key
        with ThreadPoolExecutor(max_workers=self.spec.max_concurrency) as pool:
            futures = {k: pool.submit(self._one, k, conv, params) for k, conv in unique.items()}
            answers: dict[str, Completion] = {}
            error: BaseException | None = None
            for k, f in futures.items():  # wait for every request: what was paid for is cached
                try:
                    answers[k] = f.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    error = error or exc
        self._save_stats()
        if error is not None:
            raise error
        return [answers[k] for k in keys]

    def close(self) -> None:
        self._save_stats()
        self.cache.close()
        self._client.close()

    # -- one request -----------------------------------------------------------------------------
    def _one(self, key: str, conversation: list[dict[str, str]], params: dict) -> Completion:
        hit = self.cache.get(key)
        if hit is not None:
            with self._lock:
                self.stats["cache_hits"] += 1
                self.session["cache_hits"] += 1
            return Completion(**hit, cached=True)
        import openai

        attempts = self.spec.max_retries + 1
        for attempt in range(attempts):
            with self._lock:  # a slot of the budget, held while the request is in flight
                budget = self.spec.request_budget
                if budget is not None and self.stats["requests"] + self._in_flight >= budget:
                    raise EndpointError(
                        f"{self.name}: the request budget of {budget} is spent (request_budget); "
                        "raise it and resume the run: answers already received are cached"
                    )
                self._in_flight += 1
            try:
                kwargs: dict[str, Any] = {
                    "model": params["model"],
                    "messages": conversation,
                    "max_tokens": params["max_tokens"],
                    "temperature": params["temperature"],
                    "top_p": params["top_p"],
                }
                if params["top_logprobs"]:
                    kwargs.update({"logprobs": True, "top_logprobs": params["top_logprobs"]})
                response = self._client.chat.completions.create(**kwargs)
                completion = _read(response)
            except (openai.APIResponseValidationError, ValueError, KeyError, TypeError) as exc:
                # the server answered something that is not a chat completion: retry
                self._release()
                self._count_failure(f"malformed answer: {type(exc).__name__}: {exc}")
                if attempt + 1 < attempts:
                    time.sleep(min(0.25 * 2**attempt, 4.0))
                    continue
                raise EndpointError(
                    f"{self.name} at {self.spec.base_url}: {attempts} malformed answers in a row "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            except openai.APIError as exc:  # retried by the client already (429, 5xx, timeouts)
                self._release()
                self._count_failure(f"{type(exc).__name__}: {exc}")
                status = getattr(exc, "status_code", None)
                retried = status is None or status == 429 or status >= 500
                how = f"failed after {self.spec.max_retries} retries" if retried else "refused"
                raise EndpointError(
                    f"{self.name} at {self.spec.base_url} {how}: {type(exc).__name__}: {exc}"
                ) from None
            cost = (
                completion.prompt_tokens * self.spec.price_per_1k_prompt_tokens
                + completion.completion_tokens * self.spec.price_per_1k_completion_tokens
            ) / 1000.0
            with self._lock:
                self._in_flight -= 1
                self.stats["requests"] += 1
                self.session["requests"] += 1
                self.stats["prompt_tokens"] += completion.prompt_tokens
                self.stats["completion_tokens"] += completion.completion_tokens
                self.stats["cost"] += cost
            self.cache.put(key, completion.to_json())
            self._save_stats()  # counts survive a kill as the answers do
            return completion
        raise AssertionError("unreachable")

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count_failure(self, what: str) -> None:
        with self._lock:
            self.stats["failures"] += 1
        log.warning("%s: %s", self.name, what)

    def _save_stats(self) -> None:
        with self._lock:
            stats = dict(self.stats)
        self.cache.put(_STATS_KEY, stats)


def _read(response: Any) -> Completion:
    """The parts of a chat completion Sparring uses; ValueError when it has none."""
    if isinstance(response, str | bytes) or not getattr(response, "choices", None):
        raise ValueError("no choices in the answer")
    choice = response.choices[0]
    text = choice.message.content
    if text is None:  # a refusal field, a content filter, tokens spent on reasoning: no text
        text = ""
    if not isinstance(text, str):
        raise ValueError("the answer's message content is not text")
    first = None
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if content:
        first = {t.token: float(t.logprob) for t in (content[0].top_logprobs or [])}
        first.setdefault(content[0].token, float(content[0].logprob))
    usage = getattr(response, "usage", None)
    return Completion(
        text=text,
        first_token_logprobs=first,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
