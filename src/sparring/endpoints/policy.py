"""How the endpoint client treats one HTTP attempt: which failures are retried and after how
long, which 400s are a content filter's block, how an error is described without its body, and
the per-process rate limit. Used by :mod:`sparring.endpoints.client`."""

from __future__ import annotations

import random
import threading
import time
from collections import deque

#: statuses retried besides 5xx: request timeout, conflict, rate limit
RETRIED_STATUS = frozenset({408, 409, 429})


class Unreadable(Exception):
    """The server answered something that is not a chat completion (retried)."""


class RateLimiter:
    """At most ``rpm`` requests and ``tpm`` tokens in any 60 s window (this process); ``acquire``
    waits for room, or returns False when ``stop`` is set while waiting."""

    def __init__(self, rpm: int | None, tpm: int | None, stop: threading.Event):
        self.rpm, self.tpm, self.stop = rpm, tpm, stop
        self._lock = threading.Lock()
        self._sent: deque[tuple[float, int]] = deque()

    def acquire(self, tokens: int) -> bool:
        if self.rpm is None and self.tpm is None:
            return True
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0][0] >= 60.0:
                    self._sent.popleft()
                used = sum(t for _, t in self._sent)
                fits_rpm = self.rpm is None or len(self._sent) < self.rpm
                fits_tpm = self.tpm is None or used + tokens <= self.tpm or not self._sent
                if fits_rpm and fits_tpm:
                    self._sent.append((now, tokens))
                    return True
                pause = 60.0 - (now - self._sent[0][0]) + 0.01
            if self.stop.wait(min(pause, 1.0)):
                return False


def status_of(exc: BaseException | None) -> int | None:
    return getattr(exc, "status_code", None)


def retried(exc: BaseException) -> bool:
    """Retry timeouts, dropped connections, 408, 409, 429, 5xx and unreadable answers."""
    import openai

    if isinstance(exc, Unreadable | openai.APIConnectionError):  # timeouts are connection errors
        return True
    status = status_of(exc)
    return status is not None and (status in RETRIED_STATUS or status >= 500)


def backoff(retry_state) -> float:
    """The server's ``Retry-After`` (seconds, at most 60) when it sent one, else exponential
    backoff with jitter: 0.5 s, 1 s, 2 s, ... capped at 8 s."""
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    response = getattr(exc, "response", None)
    after = response.headers.get("retry-after") if response is not None else None
    if after is not None:
        try:
            return min(max(float(after), 0.0), 60.0)
        except ValueError:
            pass
    n = retry_state.attempt_number
    return min(0.5 * 2 ** (n - 1), 8.0) * (0.5 + random.random() / 2)


def content_filtered(exc: BaseException) -> bool:
    """A 400 that says the provider's content filter refused the prompt (OpenAI and Azure
    OpenAI name it ``content_filter``; some OpenAI models ``content_policy_violation``)."""
    codes = {getattr(exc, "code", None)}
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            codes.add(err.get("code"))
            inner = err.get("innererror")
            if isinstance(inner, dict):
                codes.add(inner.get("code"))
    return bool(
        codes & {"content_filter", "content_policy_violation", "ResponsibleAIPolicyViolation"}
    )


def describe(exc: BaseException | None) -> str:
    """The error's class, HTTP status and the code/type the server gave: never its message or
    body, which can echo the prompt, the request or a credential."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, Unreadable):
        return "answers that are not a chat completion"
    parts = [type(exc).__name__]
    status = status_of(exc)
    if status is not None:
        parts.append(f"HTTP {status}")
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for field in ("code", "type"):
                value = err.get(field)
                if isinstance(value, str) and len(value) <= 64:
                    parts.append(f"{field} {value}")
    return ", ".join(parts)
