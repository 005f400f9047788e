"""Static security checks on the source tree, and the judge server's defaults."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sparring"

FORBIDDEN = {
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "pickle.load": re.compile(r"\bpickle\.loads?\("),
    "trust_remote_code=True": re.compile(r"trust_remote_code\s*=\s*True"),
    "yaml.load without SafeLoader": re.compile(r"\byaml\.(?:unsafe_)?load\((?![^)]*SafeLoader)"),
    "eval/exec": re.compile(r"(?<![\w.])(?:eval|exec)\("),
}


def _sources():
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_no_dangerous_calls_in_source(what):
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for p in _sources()
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN[what].search(line) and not line.lstrip().startswith("#")
    ]
    assert not hits, f"{what} in {hits}"


def test_every_torch_load_is_weights_only():
    hits = []
    for p in _sources():
        text = p.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            depth, j = 1, m.end()
            while depth and j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            if not re.search(r"weights_only\s*=\s*True", text[m.end() : j]):
                hits.append(f"{p.relative_to(SRC)}:{text[: m.start()].count(chr(10)) + 1}")
    assert not hits, f"torch.load without weights_only=True at {hits}"


def test_models_load_safetensors_only_and_no_remote_code_by_default():
    from sparring.players import loading

    src = inspect.getsource(loading.load_causal_lm)
    assert 'kwargs["use_safetensors"] = True' in src
    for fn in (loading.load_causal_lm, loading.load_tokenizer):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False


def test_judge_server_binds_loopback_by_default_and_compares_tokens_in_constant_time():
    from sparring.judges import serve

    for fn in (serve.serve, serve.start_server, serve.serve_judge_main):
        assert inspect.signature(fn).parameters["host"].default == "127.0.0.1"
    assert "hmac.compare_digest" in inspect.getsource(serve._Gate._authorized)
