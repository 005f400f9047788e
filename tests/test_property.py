"""Property tests: every loader and parser of outside input either succeeds or raises one of the
project's own errors naming the input; never another exception, never a hang."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sparring.config import RunConfig, load_config
from sparring.data.prompts import load_prompts
from sparring.errors import ConfigError, DataError, JudgeError, SparringError
from sparring.players.templates import clean_attack

FAST = settings(
    max_examples=150, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

BASE = {
    "name": "p",
    "attacker": {"model": "m/attacker"},
    "defender": {"model": "m/defender"},
    "judge": {"type": "callable", "target": "sparring.testing:keyword_judge"},
    "game": {"seeds": {"path": "seeds.txt"}},
}
KEYS = [
    "seed",
    "name",
    "game.rounds",
    "game.batch_size",
    "game.mode",
    "game.schedule",
    "game.schedule.0.steps",
    "attacker.lr",
    "attacker.generation.temperature",
    "defender.rl.algorithm",
    "judge.type",
    "checkpoint.every",
    "novelty.bleu_weight",
    "logging",
    "x",
    "game.seeds.path",
    "attacker.template.text",
    "a.b.c.d",
]

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(st.text(max_size=400))
@example("[" * 1000)
@example("{a: " * 600)
@example("&a [*a, *a]")
@example("1: 2\n")
@example("game: {rounds: 1e999}")
@example("!!python/object/apply:os.system ['echo pwned']")
def test_config_file_of_any_text(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(p)
    except ConfigError as exc:
        assert str(p) in str(exc)


@FAST
@given(st.binary(max_size=300))
def test_config_file_of_any_bytes(tmp_path, raw):
    p = tmp_path / "cfg.yaml"
    p.write_bytes(raw)
    try:
        load_config(p)
    except ConfigError as exc:
        assert str(p) in str(exc)


@FAST
@given(yaml_values)
def test_config_of_any_structure(tmp_path, data):
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump({**BASE, "game": data}), encoding="utf-8")
    try:
        load_config(p)
    except ConfigError as exc:
        assert str(p) in str(exc)


@FAST
@given(
    st.lists(
        st.one_of(
            st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=30)),
            st.builds(
                lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}",
                st.sampled_from(KEYS),
                yaml_values,
            ),
            st.text(max_size=40),
        ),
        max_size=4,
    )
)
def test_overrides_of_any_text(overrides):
    try:
        cfg = load_config(data=json.loads(json.dumps(BASE)), overrides=overrides)
    except ConfigError as exc:
        assert (
            "override" in str(exc)
            or "<config>" in str(exc)
            or any(o.split("=")[0] in str(exc) for o in overrides)
        )
    else:
        assert isinstance(cfg, RunConfig)


SUFFIXES = [".txt", ".jsonl", ".json", ".csv", "", ".text", ".parquet"]


@FAST
@given(st.binary(max_size=600), st.sampled_from(SUFFIXES))
@example(b"", ".txt")
@example(b"\n\n \n", ".jsonl")
@example("prompt\nhi\n".encode("utf-16"), ".csv")
@example(b"\xef\xbb\xbf\xef\xbb\xbfhello", ".txt")
@example(b"[" * 100_000, ".json")
@example(b'"\\ud800"', ".jsonl")
@example(b'prompt\n"unterminated', ".csv")
@example(b"prompt\n" + b"a" * 200_000, ".csv")
@example(b"\x00\x00\x00", ".txt")
def test_prompt_file_of_any_bytes(tmp_path, raw, suffix):
    p = tmp_path / f"prompts{suffix}"
    p.write_bytes(raw)
    try:
        prompts = load_prompts(p)
    except DataError as exc:
        assert str(p) in str(exc)
    else:
        assert prompts and all(isinstance(x, str) and x.strip() for x in prompts)
        assert all(x.encode("utf-8") for x in prompts)  # no lone surrogates reach a tokenizer


@FAST
@given(st.lists(yaml_values, max_size=5), st.sampled_from([".jsonl", ".json"]))
def test_prompt_records_of_any_json(tmp_path, records, suffix):
    p = tmp_path / f"prompts{suffix}"
    text = "\n".join(json.dumps(r) for r in records) if suffix == ".jsonl" else json.dumps(records)
    p.write_text(text, encoding="utf-8")
    try:
        load_prompts(p)
    except DataError as exc:
        assert str(p) in str(exc)


def test_prompt_file_edge_cases(tmp_path):
    huge = tmp_path / "huge.txt"
    huge.write_text("ok\n" + "x" * 100_001 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"huge.txt, line 2: prompt of 100001 characters"):
        load_prompts(huge)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("hello\n", encoding="utf-16")
    with pytest.raises(DataError, match="utf16.txt: not UTF-8 text"):
        load_prompts(utf16)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.jsonl holds no prompts"):
        load_prompts(empty)
    folder = tmp_path / "not-a-dataset"
    folder.mkdir()
    with pytest.raises(DataError, match="not-a-dataset"):
        load_prompts(folder)


@settings(max_examples=300, deadline=1000)
@given(
    st.text(max_size=3000),
    st.text(max_size=50),
    st.text(max_size=120),
    st.lists(st.text(max_size=8), max_size=4),
    st.integers(1, 2000),
    st.booleans(),
)
@example("Output: Output: Human: \n\n<s>", "seed", "Write {seed} Output:", ["<s>"], 1, True)
@example("a" * 3000, "", "{seed}", [], 7, False)
def test_clean_attack_never_fails(raw, fallback, template, specials, max_chars, first_line):
    out = clean_attack(
        raw,
        fallback=fallback,
        template_text=template,
        special_tokens=specials,
        max_chars=max_chars,
        first_line=first_line,
    )
    assert isinstance(out, str) and len(out) <= max_chars
    if fallback.strip():
        assert out.strip()  # never an empty prompt for the defender
    if first_line and out != fallback.strip()[:max_chars]:
        assert "\n" not in out


@FAST
@given(st.binary(max_size=400))
@example(b'{"p_safe": [0.5]}')
@example(b'{"p_safe": [1e999]}')
@example(b'{"p_safe": [0.5], "extras": {"h": [null]}}')
@example(b'{"p_safe": [0.5], "labels": {"1": ["a"]}, "id": 3}')
@example(b"[" * 100_000)
def test_remote_judge_answer_of_any_bytes(raw):
    from sparring.judges.remote import RemoteJudge
    from sparring.judges.specs import RemoteJudgeSpec

    judge = RemoteJudge(RemoteJudgeSpec(url="http://127.0.0.1:9"))
    try:
        out = judge._parse(raw, 1, "rid")
    except JudgeError as exc:
        assert "http://127.0.0.1:9" in str(exc)
    else:
        assert len(out.p_safe) == 1 and 0 <= out.p_safe[0] <= 1


@FAST
@given(st.text(max_size=300))
@example("judge: 1")
@example("type: remote\nurl: ftp://x")
@example("[" * 1000)
def test_judge_server_config_of_any_text(tmp_path, text):
    from sparring.judges.serve import load_judge_config

    p = tmp_path / "judge.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_judge_config(p)
    except SparringError as exc:
        assert str(p) in str(exc)


_ORACLE = importlib.util.find_spec("sparring.arena.oracle") is not None


@pytest.mark.skipif(not _ORACLE, reason="sparring.arena.oracle is not there")
@settings(max_examples=300, deadline=1000)
@given(
    st.one_of(st.text(max_size=500), st.binary(max_size=50), st.none(), st.integers(), yaml_values),
    st.one_of(st.text(max_size=500), st.none(), st.integers()),
)
@example("a" * 100_000, "b " * 50_000)
def test_arena_oracle_parses_anything(prompt, response):
    from sparring.arena import oracle

    oracle.parse_prompt(prompt)
    oracle.parse_response(response)
    oracle.judge(prompt, response)


def test_safe_load_only(tmp_path):
    """A YAML config cannot construct Python objects."""
    p = tmp_path / "cfg.yaml"
    marker = tmp_path / "pwned"
    p.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    assert not Path(marker).exists()
