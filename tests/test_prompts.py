"""Prompt files: every format, clear errors naming file and line, reproducible sampling."""

import json

import pytest

from sparring.data import PromptPool, load_prompts
from sparring.errors import DataError


def test_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"prompt": "one"}\n\n"two"\n', encoding="utf-8")
    (tmp_path / "b.csv").write_text('id,text\n1,one\n2,"two, with comma"\n', encoding="utf-8")
    (tmp_path / "c.txt").write_text("one\n\n two \n", encoding="utf-8")
    (tmp_path / "d.json").write_text(json.dumps([{"q": "one"}, {"q": "two"}]), encoding="utf-8")
    assert load_prompts(tmp_path / "a.jsonl") == ["one", "two"]
    assert load_prompts(tmp_path / "b.csv", field="text") == ["one", "two, with comma"]
    assert load_prompts(tmp_path / "c.txt") == ["one", "two"]
    assert load_prompts(tmp_path / "d.json", field="q", limit=1) == ["one"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": \n', r"bad.jsonl, line 2: invalid JSON"),
        (
            "nofield.jsonl",
            '{"prompt": "ok"}\n{"text": "x"}\n',
            r"nofield.jsonl, line 2: no 'prompt' field",
        ),
        ("num.jsonl", '{"prompt": 3}\n', r"num.jsonl, line 1, field 'prompt': expected a string"),
        ("empty.txt", "\n\n", r"empty.txt holds no prompts"),
        ("cols.csv", "a,b\n1,2\n", r"cols.csv, line 1: header has no 'prompt' column"),
        ("x.parquet", "x", r"unsupported prompt file type"),
    ],
)
def test_errors_name_file_and_line(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_prompts(p)


def test_not_utf8_and_missing(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match="latin.txt: not UTF-8"):
        load_prompts(p)
    with pytest.raises(DataError, match="does not exist"):
        load_prompts(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="unknown prompt source"):
        load_prompts(source="no-such-source")


def test_pool_epochs_and_state():
    pool = PromptPool(["a", "b", "c"], seed=1)
    first = pool.sample(3)
    assert sorted(first) == ["a", "b", "c"]  # one epoch covers every prompt once
    state = pool.state_dict()
    ahead = pool.sample(5)
    pool.load_state_dict(json.loads(json.dumps(state)))
    assert pool.sample(5) == ahead
    with pytest.raises(DataError):
        PromptPool([])


@pytest.mark.parametrize("name", ["harmbench", "do-not-answer", "strongreject", "benign"])
def test_builtin_sources_have_three_parts_and_train_is_held_out_against_test(name):
    from sparring.data.prompts import heldout_source, known_sources

    assert {name, f"{name}-train", f"{name}-validation", f"{name}-test"} <= known_sources()
    assert heldout_source(f"{name}-train") == f"{name}-test"  # report on test, not validation
