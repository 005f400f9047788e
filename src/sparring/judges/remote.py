"""An HTTP client for a judge served elsewhere (``sparring serve-judge`` or any server speaking
the same JSON protocol, documented in docs/judges.md).

Only the standard library is used. A run waits and retries rather than losing its progress:
connection errors, timeouts, 5xx and 429 answers are retried with exponential backoff and
jitter, within a configurable count and time budget; then a JudgeError names the URL. Results
are matched to inputs by position, each request carries an id the server echoes back, and a
chunk is used once, from the first well-formed answer: no pair is dropped or scored twice.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import math
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sparring.errors import ConfigError, JudgeError
from sparring.judges.base import JudgeOutput, check_pairs, validate_output
from sparring.judges.specs import RemoteJudgeSpec

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_RETRY_STATUS = {429, 500, 502, 503, 504}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: a POST body and a bearer token must not travel elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        secs = float(value)
    except ValueError:
        return None
    return secs if math.isfinite(secs) and secs >= 0 else None


class RemoteJudge:
    """Scores pairs by POSTing ``{"pairs": [...], "id": ...}`` to ``url + path``."""

    def __init__(
        self,
        spec: RemoteJudgeSpec,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.spec = spec
        self.url = spec.url + spec.path
        self.name = spec.name or "remote"
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._token = self._resolve_token()
        self._opener = urllib.request.build_opener(_NoRedirect())
        host = urllib.parse.urlsplit(self.url).hostname
        if self._token and self.url.startswith("http://") and not is_loopback(host):
            log.warning(
                "remote judge %r sends its bearer token over plain http to %s; use https",
                self.name,
                host,
            )

    def _resolve_token(self) -> str | None:
        if self.spec.token is not None:
            return self.spec.token.get_secret_value()
        if self.spec.token_env is not None:
            value = os.environ.get(self.spec.token_env)
            if not value:
                raise ConfigError(
                    f"remote judge {self.name!r}: environment variable {self.spec.token_env!r} "
                    f"(token_env) is not set or empty"
                )
            return value
        return None

    def __repr__(self) -> str:  # never shows the token
        return f"RemoteJudge(name={self.name!r}, url={self.url!r})"

    # ---------------------------------------------------------------- public
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> JudgeOutput:
        check_pairs(prompts, responses)
        n = len(prompts)
        if n == 0:
            return JudgeOutput(p_safe=[])
        run_id = uuid.uuid4().hex
        chunks = []
        step = self.spec.max_batch
        for k, start in enumerate(range(0, n, step)):
            stop = min(start + step, n)
            chunks.append(
                self._score_chunk(
                    list(prompts[start:stop]), list(responses[start:stop]), f"{run_id}-{k}"
                )
            )
        keys = [(sorted(c.extras), sorted(c.labels)) for c in chunks]
        if any(k != keys[0] for k in keys):
            raise JudgeError(
                f"remote judge {self.name!r} at {self.url}: chunks returned different keys"
            )
        return JudgeOutput.concat(chunks)

    # ---------------------------------------------------------------- one request, retried
    def _score_chunk(
        self, prompts: list[str], responses: list[str], request_id: str
    ) -> JudgeOutput:
        body = json.dumps(
            {
                "id": request_id,
                "pairs": [
                    {"prompt": p, "response": r} for p, r in zip(prompts, responses, strict=True)
                ],
            }
        ).encode("utf-8")
        spec = self.spec
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                raw = self._post(body)
            except _Retryable as exc:
                elapsed = time.monotonic() - start
                delay = min(spec.backoff_max_s, spec.backoff_initial_s * 2**attempt)
                delay = delay / 2 + self._rng.uniform(0, delay / 2)  # "equal jitter"
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, spec.backoff_max_s))
                if attempt >= spec.max_retries or elapsed + delay > spec.retry_budget_s:
                    raise JudgeError(
                        f"remote judge {self.name!r} at {self.url} failed after {attempt + 1} "
                        f"attempts in {elapsed:.1f}s (max_retries={spec.max_retries}, "
                        f"retry_budget_s={spec.retry_budget_s}): {exc}"
                    ) from None
                attempt += 1
                log.warning(
                    "remote judge %r at %s: %s; retry %d/%d in %.1fs",
                    self.name,
                    self.url,
                    exc,
                    attempt,
                    spec.max_retries,
                    delay,
                )
                self._sleep(delay)
                continue
            return self._parse(raw, len(prompts), request_id)

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.spec.timeout_s) as resp:
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
                if resp.length and len(raw) <= MAX_RESPONSE_BYTES:  # connection dropped mid-answer
                    raise _Retryable(f"answer cut short: {resp.length} of its bytes never arrived")
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                detail = exc.read(2000).decode("utf-8", "replace").strip()
            except Exception:
                detail = ""
            finally:
                exc.close()
            if status in _RETRY_STATUS:
                raise _Retryable(
                    f"HTTP {status} {detail[:200]}", _retry_after(exc.headers)
                ) from None
            hint = ""
            if status == 401:
                hint = " (check token / token_env)"
            elif 300 <= status < 400:
                hint = (
                    f" (redirect to {exc.headers.get('Location')!r}; set url to the final address)"
                )
            raise JudgeError(
                f"remote judge {self.name!r} at {self.url} answered HTTP {status}{hint}: {detail[:500]}"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise JudgeError(
                    f"remote judge {self.name!r} at {self.url}: TLS error: {reason}"
                ) from None
            raise _Retryable(f"cannot connect: {reason}") from None
        except TimeoutError:
            raise _Retryable(f"no answer within timeout_s={self.spec.timeout_s}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise JudgeError(
                f"remote judge {self.name!r} at {self.url}: answer larger than {MAX_RESPONSE_BYTES} bytes"
            )
        return raw

    # ---------------------------------------------------------------- strict answer checks
    def _parse(self, raw: bytes, n: int, request_id: str) -> JudgeOutput:
        where = f"remote judge {self.name!r} at {self.url}"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            snippet = raw[:200].decode("utf-8", "replace")
            raise JudgeError(f"{where} answered malformed JSON ({exc}): {snippet!r}") from None
        if not isinstance(data, dict):
            raise JudgeError(f"{where} answered a JSON {type(data).__name__}; expected an object")
        if data.get("id") not in (None, request_id):
            raise JudgeError(
                f"{where} answered for request id {data.get('id')!r}; expected {request_id!r}"
            )
        p_safe = self._floats(data.get("p_safe"), n, f"{where}: 'p_safe'")
        extras_raw = data.get("extras", {})
        labels_raw = data.get("labels", {})
        if not isinstance(extras_raw, dict) or not isinstance(labels_raw, dict):
            raise JudgeError(f"{where}: 'extras' and 'labels' must be JSON objects")
        extras = {
            str(k): self._floats(v, n, f"{where}: extras[{k!r}]") for k, v in extras_raw.items()
        }
        labels: dict[str, list[str | None]] = {}
        for k, v in labels_raw.items():
            if (
                not isinstance(v, list)
                or len(v) != n
                or not all(x is None or isinstance(x, str) for x in v)
            ):
                raise JudgeError(f"{where}: labels[{k!r}] must be a list of {n} strings or nulls")
            labels[str(k)] = list(v)
        return validate_output(
            self.name, JudgeOutput(p_safe=p_safe, extras=extras, labels=labels), n
        )

    @staticmethod
    def _floats(value: object, n: int, what: str) -> list[float]:
        if not isinstance(value, list):
            raise JudgeError(f"{what} must be a list of {n} numbers, got {type(value).__name__}")
        if len(value) != n:
            raise JudgeError(f"{what} has {len(value)} values for {n} pairs")
        out = []
        for i, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise JudgeError(f"{what}[{i}] is {x!r}; expected a number in [0, 1]")
            f = float(x)
            if not math.isfinite(f) or not 0.0 <= f <= 1.0:
                raise JudgeError(f"{what}[{i}] is {f}; expected a finite number in [0, 1]")
            out.append(f)
        return out
