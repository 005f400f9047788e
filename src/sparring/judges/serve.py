"""Serve a judge over HTTP: ``POST /v1/score``, ``GET /v1/health`` (``sparring serve-judge``).

Built on FastAPI + uvicorn (the ``serve`` extra), imported when a server is created. The
request schema, with its limits, is published at ``/openapi.json``. Protocol: docs/judges.md.

Hardening: bound to 127.0.0.1 unless told otherwise; optional bearer token compared in
constant time; the body size is checked from Content-Length before anything is read (and
counted while reading chunked bodies); batch size and text length are limited by the schema;
malformed input gets 400/401/413/422, never 5xx; a judge failure gets a generic 500 (the
traceback goes to the server log only); judge calls are serialised by a lock.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at
# runtime, and the request models are built per app (their limits are part of the schema).

import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from sparring.errors import ConfigError, SparringError
from sparring.judges.base import Judge, validate_output
from sparring.judges.registry import build_judge, parse_judge_spec
from sparring.judges.remote import is_loopback

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_TEXT_CHARS = 100_000
MAX_ID_CHARS = 200
SCORE_PATH = "/v1/score"
HEALTH_PATH = "/v1/health"
JUDGE_FAILED = "the judge failed to score this batch; see the server log"


# ---------------------------------------------------------------------------- configuration
def load_judge_config(path: str | Path, block: str = "judge") -> Any:
    """Read a judge spec from YAML: a run config with a top-level ``judge:`` block (other keys
    ignored; ``block="eval_judge"`` picks that one) or a file that is just a judge spec."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read judge config {str(p)!r}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"judge config {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"judge config {str(p)!r}: expected a mapping at the top level")
    if block in data:
        spec, where = data[block], f"{p}:{block}"
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"judge config {str(p)!r}: `{block}:` must be a mapping with a `type:`"
            )
    elif "type" in data:
        spec, where = data, str(p)
    else:
        raise ConfigError(
            f"judge config {str(p)!r}: expected a top-level `{block}:` block (a run config) or a "
            f"judge spec with `type:`; found keys {sorted(map(str, data))}"
        )
    return parse_judge_spec(spec, where=where)


def _as_judge(spec_or_judge: Any) -> Judge:
    if isinstance(spec_or_judge, Judge):
        return spec_or_judge
    return build_judge(spec_or_judge)


# ---------------------------------------------------------------------------- ASGI gate
async def _send_json(
    send: Any, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class _Gate:
    """Checks body size (before reading), the bearer token, then buffers the bounded body."""

    def __init__(
        self, app: Any, *, token: str | None, max_body_bytes: int, protected: tuple[str, ...]
    ):
        self.app = app
        self.max_body = max_body_bytes
        self.protected = protected
        self._token_digest = hashlib.sha256(token.encode("utf-8")).digest() if token else None

    def _authorized(self, header: str) -> bool:
        assert self._token_digest is not None
        scheme, _, credential = header.strip().partition(" ")
        given = hashlib.sha256(credential.strip().encode("utf-8", "surrogateescape")).digest()
        ok = hmac.compare_digest(given, self._token_digest)  # constant time
        return ok and scheme.lower() == "bearer"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _send_json(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body:
                await _send_json(send, 413, f"request body larger than {self.max_body} bytes")
                return
        protected = self._token_digest is not None and scope["path"] in self.protected
        if protected and not self._authorized(headers.get("authorization", "")):
            await _send_json(
                send, 401, "missing or invalid bearer token", {"www-authenticate": "Bearer"}
            )
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                await _send_json(send, 413, f"request body larger than {self.max_body} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        buffered = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": buffered, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---------------------------------------------------------------------------- the app
def _utf8_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


def create_app(
    spec_or_judge: Any,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> Any:
    """The FastAPI application serving one judge (built from a spec, or given)."""
    try:
        from fastapi import Depends, FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from fastapi.security import HTTPBearer
        from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SparringError(
            "serving a judge needs fastapi and uvicorn: pip install -e '.[serve]' (from the clone)"
        ) from exc
    for what, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_batch", max_batch),
        ("max_text_chars", max_text_chars),
    ):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be a positive integer, not {value!r}")
    judge = _as_judge(spec_or_judge)
    lock = threading.Lock()

    Text = Annotated[StrictStr, Field(max_length=max_text_chars), AfterValidator(_utf8_text)]

    class Pair(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompt: Text
        response: Text

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        pairs: list[Pair] = Field(max_length=max_batch, description=f"at most {max_batch} pairs")
        id: Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)] | None = Field(
            None, description="request id, echoed back"
        )

    class ScoreResponse(BaseModel):
        id: str | None
        judge: str
        p_safe: list[float]
        extras: dict[str, list[float]]
        labels: dict[str, list[str | None]]

    class Health(BaseModel):
        status: str
        judge: str

    class Error(BaseModel):
        detail: Any

    app = FastAPI(
        title="Sparring judge",
        version="1",
        description="Scores (prompt, response) pairs with P(safe). See docs/judges.md.",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    errors = {
        400: {"model": Error, "description": "malformed request"},
        401: {"model": Error, "description": "missing or invalid bearer token"},
        413: {"model": Error, "description": f"body larger than {max_body_bytes} bytes"},
        422: {"model": Error, "description": "request does not match the schema"},
        500: {"model": Error, "description": "the judge failed"},
    }
    dependencies = [Depends(HTTPBearer(auto_error=False))] if token else []

    @app.post(
        SCORE_PATH,
        response_model=ScoreResponse,
        responses=errors,  # type: ignore[arg-type]
        dependencies=dependencies,
        summary="Score (prompt, response) pairs",
    )
    def score(request: ScoreRequest) -> Any:
        prompts = [p.prompt for p in request.pairs]
        responses = [p.response for p in request.pairs]
        started = time.monotonic()
        try:
            with lock:  # models are not thread-safe
                out = judge.score(prompts, responses)
            out = validate_output(judge.name, out, len(prompts))
        except Exception:
            log.exception(
                "judge %r failed on request %r (%d pairs)", judge.name, request.id, len(prompts)
            )
            return JSONResponse(status_code=500, content={"detail": JUDGE_FAILED})
        log.info(
            "scored %d pairs (request %r) in %.2fs",
            len(prompts),
            request.id,
            time.monotonic() - started,
        )
        return {
            "id": request.id,
            "judge": judge.name,
            "p_safe": [float(x) for x in out.p_safe],
            "extras": {k: [float(x) for x in v] for k, v in out.extras.items()},
            "labels": {k: list(v) for k, v in out.labels.items()},
        }

    @app.get(HEALTH_PATH, response_model=Health, summary="Liveness")
    def health() -> Any:
        return {"status": "ok", "judge": judge.name}

    app.add_middleware(_Gate, token=token, max_body_bytes=max_body_bytes, protected=(SCORE_PATH,))
    app.state.judge = judge
    return app


# ---------------------------------------------------------------------------- running it
def _uvicorn_config(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        limit_concurrency=64,  # beyond that: 503, which remote clients retry
        timeout_keep_alive=30,
    )


def _warn_open(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        log.warning(
            "serving a judge on %s without a token: anyone who can reach it can use it", host
        )


def serve(
    spec_or_judge: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    log_level: str = "info",
) -> None:
    """Serve a judge (a spec, a mapping, or a built judge) until interrupted."""
    import uvicorn

    app = create_app(
        spec_or_judge,
        token=token,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        max_text_chars=max_text_chars,
    )
    _warn_open(host, token)
    log.info("serving judge %r on http://%s:%d%s", app.state.judge.name, host, port, SCORE_PATH)
    uvicorn.Server(_uvicorn_config(app, host, port, log_level)).run()


class RunningServer:
    """A judge server running in a background thread (see :func:`start_server`)."""

    def __init__(self, server: Any, thread: threading.Thread, sock: socket.socket, host: str):
        self._server, self._thread, self._sock = server, thread, sock
        self.host = host
        self.port = int(sock.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    spec_or_judge: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    log_level: str = "warning",
    startup_timeout: float = 20.0,
) -> RunningServer:
    """Start a judge server in a daemon thread (``port=0``: a free port); returns when it
    accepts connections. Use as a context manager or call ``stop()``."""
    import uvicorn

    app = create_app(
        spec_or_judge,
        token=token,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        max_text_chars=max_text_chars,
    )
    _warn_open(host, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SparringError(f"cannot bind the judge server to {host}:{port}: {exc}") from exc
    server = uvicorn.Server(_uvicorn_config(app, host, port, log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="judge-server"
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise SparringError(f"the judge server on {host}:{port} did not start")
        time.sleep(0.01)
    return RunningServer(server, thread, sock, host)


def serve_judge_main(
    config: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_env: str | None = None,
    block: str = "judge",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    log_level: str = "info",
) -> int:
    """Entry point of ``sparring serve-judge CONFIG``: load the judge spec from ``config``
    (``block`` of a run config, or a bare spec), read the token from the environment variable
    ``token_env`` if given, and serve until interrupted. Returns the exit code (0)."""
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise ConfigError(
                f"--token-env {token_env}: environment variable {token_env!r} is not set or empty"
            )
    spec = load_judge_config(config, block=block)
    serve(
        spec,
        host=host,
        port=port,
        token=token,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        max_text_chars=max_text_chars,
        log_level=log_level,
    )
    return 0


# ---------------------------------------------------------------------------- CLI hook
def _serve_judge_command(args: Any) -> int:
    return serve_judge_main(
        args.config,
        host=args.host,
        port=args.port,
        token_env=args.token_env,
        block=args.block,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        max_text_chars=args.max_text_chars,
        log_level=args.log_level,
    )


def add_commands(subparsers: Any) -> None:
    """Register ``sparring serve-judge`` (listed in ``sparring.cli.COMMAND_MODULES``)."""
    from sparring.cli_args import with_examples

    p = subparsers.add_parser(
        "serve-judge",
        help="serve a judge over HTTP for remote judges (type: remote)",
        description="Serve the judge of CONFIG (its `judge:` block, or a bare judge spec) at "
        "POST /v1/score and GET /v1/health. Needs the serve extra (fastapi, uvicorn).",
        **with_examples(
            "JUDGE_TOKEN=s3cret sparring serve-judge judge.yaml --token-env JUDGE_TOKEN"
        ),
    )
    p.add_argument("config", help="run config with a `judge:` block, or a YAML judge spec")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--token-env",
        metavar="VAR",
        help="require `Authorization: Bearer <token>`, the token read from environment variable VAR",
    )
    p.add_argument(
        "--block", default="judge", help="which block of a run config to serve (judge, eval_judge)"
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="max request size"
    )
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="max pairs per request")
    p.add_argument(
        "--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS, help="max characters per text"
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="server log level (default info)",
    )
    p.set_defaults(func=_serve_judge_command)
