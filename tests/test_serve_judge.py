"""Judge server and remote client over loopback (real server on an ephemeral port; fake flaky
servers built on the standard library). No network beyond 127.0.0.1."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from sparring.errors import ConfigError, JudgeError  # noqa: E402
from sparring.judges import JudgeOutput, build_judge  # noqa: E402
from sparring.judges.remote import RemoteJudge  # noqa: E402
from sparring.judges.serve import (  # noqa: E402
    JUDGE_FAILED,
    add_commands,
    load_judge_config,
    serve_judge_main,
    start_server,
)
from sparring.judges.specs import RefusalJudgeSpec, RemoteJudgeSpec  # noqa: E402

TOKEN = "correct-horse-battery"


class CountingJudge:
    """Deterministic scores; remembers every pair it scored."""

    name = "counting"

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    @staticmethod
    def expected(prompt: str, response: str) -> float:
        return (len(prompt) + 3 * len(response)) % 11 / 10

    def score(self, prompts, responses):
        self.seen.extend(zip(prompts, responses, strict=True))
        return JudgeOutput(
            p_safe=[self.expected(p, r) for p, r in zip(prompts, responses, strict=True)],
            extras={"helpful": [1.0 if "help" in r else 0.0 for r in responses]},
            labels={"category": [None if len(r) % 2 else "S1" for r in responses]},
        )


class BrokenJudge:
    name = "broken"

    def score(self, prompts, responses):
        raise RuntimeError("secret internal detail /home/model/weights")


@pytest.fixture(scope="module")
def judge():
    return CountingJudge()


@pytest.fixture(scope="module")
def server(judge):
    srv = start_server(judge, token=TOKEN, max_body_bytes=4096, max_batch=5, max_text_chars=200)
    yield srv
    srv.stop()


def request(srv, method, path, body=None, headers=None, token=TOKEN):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, resp


def pairs(n: int, start: int = 0) -> tuple[list[str], list[str]]:
    return [f"prompt {i}" for i in range(start, start + n)], [
        f"response {'help ' * (i % 3)}{i}" for i in range(start, start + n)
    ]


# ------------------------------------------------------------------------------- happy path
def test_remote_client_against_the_real_server(server, judge):
    judge.seen.clear()
    remote = build_judge({"type": "remote", "url": server.url, "token": TOKEN, "max_batch": 2})
    prompts, responses = pairs(7)
    out = remote.score(prompts, responses)
    assert out.p_safe == pytest.approx(
        [CountingJudge.expected(p, r) for p, r in zip(prompts, responses, strict=True)]
    )
    assert out.extras["helpful"] == [1.0 if "help" in r else 0.0 for r in responses]
    assert out.labels["category"] == [None if len(r) % 2 else "S1" for r in responses]
    assert sorted(judge.seen) == sorted(
        zip(prompts, responses, strict=True)
    )  # each pair scored exactly once
    assert remote.score([], []).p_safe == []


def test_token_from_environment(server, monkeypatch):
    monkeypatch.setenv("SPARRING_TEST_TOKEN", TOKEN)
    remote = build_judge({"type": "remote", "url": server.url, "token_env": "SPARRING_TEST_TOKEN"})
    assert remote.score(["a"], ["b"]).p_safe == [pytest.approx(CountingJudge.expected("a", "b"))]
    monkeypatch.delenv("SPARRING_TEST_TOKEN")
    with pytest.raises(ConfigError, match="SPARRING_TEST_TOKEN"):
        build_judge({"type": "remote", "url": server.url, "token_env": "SPARRING_TEST_TOKEN"})


def test_wrong_token_is_401_and_not_retried(server, judge):
    judge.seen.clear()
    remote = RemoteJudge(
        RemoteJudgeSpec(url=server.url, token="wrong", max_retries=5), sleep=_no_sleep
    )
    with pytest.raises(JudgeError, match=r"HTTP 401.*token") as err:
        remote.score(["a"], ["b"])
    assert server.url in str(err.value) and "wrong" not in str(err.value)
    assert judge.seen == []


def test_request_id_is_echoed_and_health_is_open(server):
    status, data, _ = request(
        server, "POST", "/v1/score", {"id": "abc", "pairs": [{"prompt": "a", "response": "b"}]}
    )
    body = json.loads(data)
    assert status == 200 and body["id"] == "abc" and body["judge"] == "counting"
    assert set(body) == {"id", "judge", "p_safe", "extras", "labels"}
    status, data, _ = request(server, "GET", "/v1/health", token=None)
    assert status == 200 and json.loads(data) == {"status": "ok", "judge": "counting"}
    status, data, _ = request(server, "POST", "/v1/score", {"pairs": []})
    assert status == 200 and json.loads(data)["p_safe"] == []


def test_openapi_schema_documents_limits(server):
    status, data, _ = request(server, "GET", "/openapi.json", token=None)
    schema = json.loads(data)
    assert status == 200 and "/v1/score" in schema["paths"]
    assert schema["components"]["schemas"]["ScoreRequest"]["properties"]["pairs"]["maxItems"] == 5
    assert schema["components"]["schemas"]["Pair"]["properties"]["prompt"]["maxLength"] == 200
    assert {"401", "413", "422", "500"} <= set(schema["paths"]["/v1/score"]["post"]["responses"])


# ------------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 422),
        (b"\xff\xfe\x00", 400),
        ([1, 2], 422),
        ({}, 422),
        ({"pairs": "nope"}, 422),
        ({"pairs": [{"prompt": "a"}]}, 422),
        ({"pairs": [{"prompt": "a", "response": "b", "extra": 1}]}, 422),
        ({"pairs": [{"prompt": 1, "response": "b"}]}, 422),
        ({"pairs": [{"prompt": None, "response": "b"}]}, 422),
        ({"pairs": [{"prompt": ["a"], "response": "b"}]}, 422),
        ({"pairs": [{"prompt": "a" * 201, "response": "b"}]}, 422),
        ({"pairs": [{"prompt": "a", "response": "b"}] * 6}, 422),
        ({"pairs": [], "id": 5}, 422),
        ({"pairs": [{"prompt": "\ud800", "response": "b"}]}, 422),
    ],
)
def test_malformed_requests_get_4xx(server, judge, body, status):
    judge.seen.clear()
    got, data, _ = request(server, "POST", "/v1/score", body)
    assert got == status, data
    assert "detail" in json.loads(data)
    assert judge.seen == []


def test_auth_and_size_limits(server, judge):
    judge.seen.clear()
    ok = {"pairs": [{"prompt": "a", "response": "b"}]}
    status, _, resp = request(server, "POST", "/v1/score", ok, token=None)
    assert status == 401 and resp.getheader("www-authenticate") == "Bearer"
    status, _, _ = request(server, "POST", "/v1/score", ok, token="correct-horse-batterx")
    assert status == 401
    status, _, _ = request(
        server, "POST", "/v1/score", ok, headers={"Authorization": f"Basic {TOKEN}"}, token=None
    )
    assert status == 401
    status, data, _ = request(server, "POST", "/v1/score", "x" * 5000)
    assert status == 413 and b"4096" in data
    assert judge.seen == []
    status, _, _ = request(server, "GET", "/v1/score")
    assert status == 405


def test_chunked_body_over_the_limit_is_413(server):
    # no Content-Length: the server counts the chunks as they come and stops at the limit
    body = b"".join(b"%x\r\n%s\r\n" % (1000, b"x" * 1000) for _ in range(6)) + b"0\r\n\r\n"
    head = (
        "POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)  # one write: the whole request is on its way before any answer
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_judge_failure_is_a_generic_500():
    with start_server(BrokenJudge()) as srv:
        status, data, _ = request(
            srv, "POST", "/v1/score", {"pairs": [{"prompt": "a", "response": "b"}]}
        )
    assert status == 500
    assert json.loads(data) == {"detail": JUDGE_FAILED}
    assert b"secret" not in data and b"Traceback" not in data


def test_server_builds_a_judge_from_a_spec():
    with start_server(RefusalJudgeSpec()) as srv:
        remote = build_judge({"type": "remote", "url": srv.url})
        out = remote.score(["q", "q"], ["I cannot help with that", "Sure, here it is"])
    assert out.extras["helpful"] == [0.0, 1.0] and out.p_safe == [1.0, 1.0]


# ------------------------------------------------------------------------------- flaky servers
def _no_sleep(_seconds: float) -> None:
    pass


class Script:
    """A stdlib HTTP server answering POSTs from a script of (status, body, headers, delay)."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.requests: list[dict] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                script.requests.append(body)
                status, payload, headers, delay = (
                    script.steps.pop(0) if script.steps else script.default
                )
                if delay:
                    time.sleep(delay)
                if callable(payload):
                    payload = payload(body)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.default = (500, {"detail": "down"}, None, 0)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def good(body):
    n = len(body["pairs"])
    return {"id": body["id"], "p_safe": [0.25] * n, "extras": {"helpful": [1.0] * n}, "labels": {}}


def client(url, sleeps=None, **kw):
    spec = RemoteJudgeSpec(url=url, backoff_initial_s=0.5, backoff_max_s=4.0, **kw)
    return RemoteJudge(spec, sleep=(sleeps.append if sleeps is not None else _no_sleep))


def test_5xx_then_success_is_retried_once():
    sleeps: list[float] = []
    with Script([(503, {"detail": "busy"}, None, 0), (200, good, None, 0)]) as srv:
        out = client(srv.url, sleeps).score(["a", "b"], ["c", "d"])
    assert out.p_safe == [0.25, 0.25] and out.extras["helpful"] == [1.0, 1.0]
    assert len(srv.requests) == 2 and len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5
    assert srv.requests[0] == srv.requests[1]  # the same chunk, with the same request id


def test_429_honours_retry_after():
    sleeps: list[float] = []
    with Script(
        [(429, {"detail": "slow down"}, {"Retry-After": "3"}, 0), (200, good, None, 0)]
    ) as srv:
        client(srv.url, sleeps).score(["a"], ["b"])
    assert sleeps == [3.0]


def test_chunks_are_each_sent_once():
    with Script([(200, good, None, 0)] * 3) as srv:
        out = client(srv.url, max_batch=2).score(*pairs(5))
    assert len(out.p_safe) == 5 and len(srv.requests) == 3
    sent = [p["prompt"] for r in srv.requests for p in r["pairs"]]
    assert sent == pairs(5)[0] and len({r["id"] for r in srv.requests}) == 3


def test_4xx_is_not_retried():
    with (
        Script([(400, {"detail": "bad"}, None, 0)]) as srv,
        pytest.raises(JudgeError, match="HTTP 400") as err,
    ):
        client(srv.url, max_retries=5).score(["a"], ["b"])
    assert srv.url in str(err.value) and len(srv.requests) == 1


def test_retries_stop_at_max_retries():
    sleeps: list[float] = []
    with Script([]) as srv, pytest.raises(JudgeError, match="after 3 attempts") as err:
        client(srv.url, sleeps, max_retries=2).score(["a"], ["b"])
    assert len(srv.requests) == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9
    assert srv.url in str(err.value)


def test_server_down_fails_within_the_retry_budget():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}"
    spec = RemoteJudgeSpec(
        url=url, max_retries=1000, retry_budget_s=0.6, backoff_initial_s=0.05, backoff_max_s=0.1
    )
    start = time.monotonic()
    with pytest.raises(JudgeError) as err:
        RemoteJudge(spec).score(["a"], ["b"])
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    msg = str(err.value)
    assert f"{url}/v1/score" in msg and "cannot connect" in msg and "retry_budget_s=0.6" in msg


def test_timeout_is_retried_and_the_answer_used_once():
    with Script([(200, good, None, 1.0), (200, good, None, 0)]) as srv:
        out = client(srv.url, timeout_s=0.3).score(["a"], ["b"])
    assert out.p_safe == [0.25] and len(srv.requests) == 2


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"<html>oops</html>", "malformed JSON"),
        ([0.5], "expected an object"),
        (lambda b: {"id": b["id"], "p_safe": [0.5, 0.5]}, "2 values for 1 pairs"),
        (lambda b: {"id": b["id"], "p_safe": [1.5]}, r"expected a finite number in \[0, 1\]"),
        (b'{"p_safe": [NaN]}', "finite"),
        (lambda b: {"id": b["id"], "p_safe": [True]}, "expected a number"),
        (lambda b: {"id": "other", "p_safe": [0.5]}, "request id"),
        (lambda b: {"id": b["id"], "p_safe": [0.5], "labels": {"c": [3]}}, "labels"),
        (lambda b: {"id": b["id"], "p_safe": [0.5], "extras": {"h": [2.0]}}, "extras"),
        (lambda b: {"id": b["id"]}, "'p_safe' must be a list"),
    ],
)
def test_malformed_answers_raise_naming_the_url(payload, match):
    with Script([(200, payload, None, 0)]) as srv, pytest.raises(JudgeError, match=match) as err:
        client(srv.url, max_retries=3).score(["a"], ["b"])
    assert srv.url in str(err.value) and len(srv.requests) == 1


# ------------------------------------------------------------------------------- config & CLI
RUN_CONFIG = """
name: tiny
seed: 0
attacker: {model: whatever}
judge:
  type: ensemble
  judges:
    - {type: refusal}
    - {type: refusal, name: strict, extra_patterns: ["nope"]}
eval_judge:
  type: refusal
  name: held-out
"""


def test_load_judge_config(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(RUN_CONFIG)
    spec = load_judge_config(run)
    assert spec.type == "ensemble" and spec.judges[1].name == "strict"
    assert load_judge_config(run, block="eval_judge").name == "held-out"
    bare = tmp_path / "judge.yaml"
    bare.write_text("type: remote\nurl: http://127.0.0.1:9000\n")
    assert load_judge_config(bare).url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nseed: 1\n", "expected a top-level `judge:` block"),
        ("judge: [1, 2]\n", "must be a mapping"),
        ("judge: {type: guard}\n", r"judge\.model: Field required"),
        ("judge: {type: nope}\n", "judge"),
        ("- a\n- b\n", "mapping at the top level"),
        ("judge: {type: refusal\n", "not valid YAML"),
    ],
)
def test_load_judge_config_errors(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_judge_config(p)
    assert "bad.yaml" in str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_judge_config(tmp_path / "missing.yaml")


def test_serve_judge_main_and_cli_hook(tmp_path, monkeypatch):
    import sparring.judges.serve as serve_mod

    calls = []
    monkeypatch.setattr(serve_mod, "serve", lambda spec, **kw: calls.append((spec, kw)))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(RUN_CONFIG)
    monkeypatch.setenv("JUDGE_TOKEN", "s3")
    assert serve_judge_main(cfg, port=9001, token_env="JUDGE_TOKEN") == 0
    spec, kw = calls[-1]
    assert (
        spec.type == "ensemble"
        and kw["token"] == "s3"
        and kw["host"] == "127.0.0.1"
        and kw["port"] == 9001
    )

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "serve-judge",
            str(cfg),
            "--port",
            "9002",
            "--token-env",
            "JUDGE_TOKEN",
            "--block",
            "eval_judge",
        ]
    )
    assert args.func(args) == 0
    spec, kw = calls[-1]
    assert spec.name == "held-out" and kw["port"] == 9002 and kw["token"] == "s3"

    monkeypatch.delenv("JUDGE_TOKEN")
    with pytest.raises(ConfigError, match="JUDGE_TOKEN"):
        serve_judge_main(cfg, token_env="JUDGE_TOKEN")
