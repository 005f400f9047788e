"""Benign answer quality, pairwise: both orders, position bias cancelled, figures by hand."""

from __future__ import annotations

import json

import pytest

from sparring.config import QualityConfig
from sparring.evaluation.compare import start_final_comparison
from sparring.evaluation.evaluate import SCHEMA
from sparring.evaluation.pairwise import benign_quality, format_pair
from sparring.judges import build_judge

BEFORE = [
    {"set": "benign", "prompt": "p1", "response": "one two three"},
    {"set": "benign", "prompt": "p2", "response": "one"},
    {"set": "benign", "prompt": "p3", "response": "one two"},
    {"set": "benign", "prompt": "p4", "response": "a b c d"},
    {"set": "heldout", "prompt": "h", "response": "x"},
]
AFTER = [
    {"set": "benign", "prompt": "p1", "response": "one"},  # shorter: worse
    {"set": "benign", "prompt": "p2", "response": "one two"},  # longer: better
    {"set": "benign", "prompt": "p3", "response": "one two"},  # as long: no preference
    {"set": "benign", "prompt": "p4", "response": "a"},  # shorter: worse
    {"set": "benign", "prompt": "p5", "response": "not in before"},
]


def _judge(name: str):
    return build_judge({"type": "callable", "target": f"sparring.testing:{name}"})


def test_a_longer_answer_judge_gives_the_hand_counted_preferences():
    q = benign_quality(BEFORE, AFTER, _judge("longer_answer_judge"))
    # per prompt P(trained better): 0, 1, 0.5, 0 -> mean 0.375; preferred on 1 of 4
    assert q["n"] == 4 and q["p_trained_better"] == pytest.approx(0.375)
    assert q["trained_preferred"] == pytest.approx(0.25)
    assert q["low"] <= 0.375 <= q["high"] and q["low"] >= 0 and q["high"] <= 1
    assert q["words_untrained"] == pytest.approx(10 / 4)
    assert q["words_trained"] == pytest.approx(6 / 4)
    # a judge asked "is A better?" whose yes is "unsafe" reads the other way
    flipped = benign_quality(BEFORE, AFTER, _judge("longer_answer_judge"), a_better="unsafe")
    assert flipped["p_trained_better"] == pytest.approx(1 - 0.375)


def test_both_orders_cancel_a_judge_that_always_prefers_answer_a():
    q = benign_quality(BEFORE, AFTER, _judge("first_answer_judge"))
    assert q["p_trained_better"] == pytest.approx(0.5)
    assert format_pair("x", "y") == "Answer A:\nx\n\nAnswer B:\ny"


def test_the_run_comparison_carries_the_quality_figure(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text("name: run\n")
    for name, rows in (("start", BEFORE), ("final", AFTER)):
        meta = {"schema": SCHEMA, "name": name, "samples_file": f"{name}.samples.jsonl"}
        (run / "eval" / f"{name}.json").write_text(json.dumps(meta))
        (run / "eval" / f"{name}.samples.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows) + "\n"
        )
    quality = QualityConfig(
        judge={"type": "callable", "target": "sparring.testing:longer_answer_judge"}
    )
    comparison = start_final_comparison(run, quality)
    entry = comparison["benign"]["preferred, pairwise (sparring.testing:longer_answer_judge)"]
    assert (entry["start"], entry["final"], entry["n_prompts"]) == (0.5, 0.375, 4)
    assert entry["diff"] == pytest.approx(-0.125)
    saved = json.loads((run / "eval" / "start-vs-final.json").read_text())
    assert (
        saved["benign"]["preferred, pairwise (sparring.testing:longer_answer_judge)"]["final"]
        == 0.375
    )
