"""Every judge type drives a `sparring train` run selected by its config alone."""

import math

import pytest
import yaml

from sparring.cli import main
from sparring.runs import read_jsonl
from sparring.testing import build_tiny_classifier, build_tiny_model


@pytest.fixture(scope="module")
def judge_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("judges")
    return {
        "guard": build_tiny_model(root / "guard", arch="llama", seed=7),
        "classifier": build_tiny_classifier(root / "classifier", seed=8),
    }


def _specs(m):
    guard = {"type": "guard", "model": str(m["guard"]), "categories": False}
    classifier = {"type": "classifier", "model": str(m["classifier"]), "positive_label": 0}
    return {
        "guard": guard,
        "classifier": classifier,
        "ensemble": {"type": "ensemble", "judges": [guard, classifier], "reduce": "min"},
        "with-helpfulness": {
            "type": "with-helpfulness",
            "safety": classifier,
            "helpfulness": {"type": "refusal"},
        },
    }


@pytest.mark.parametrize("kind", ["guard", "classifier", "ensemble", "with-helpfulness", "remote"])
def test_judge_type_runs_a_game(kind, judge_models, run_data, benign_file, tmp_path):
    data = run_data(rounds=1)
    if kind == "remote":
        from sparring.judges.serve import start_server

        server = start_server(
            {"type": "callable", "target": "sparring.testing:keyword_judge"}, port=0
        )
        data["judge"] = {"type": "remote", "url": server.url, "max_retries": 1}
    else:
        server = None
        data["judge"] = _specs(judge_models)[kind]
    if kind in ("with-helpfulness", "remote"):
        data["game"]["benign"] = {"prompts": {"path": str(benign_file)}, "fraction": 0.34}
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        assert main(["train", str(cfg), "--no-progress"]) == 0
    finally:
        if server is not None:
            server.stop()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(metrics) == 2 and all(math.isfinite(m["p_safe"]) for m in metrics)
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert all(0.0 <= s["p_safe"] <= 1.0 for s in samples)
    if kind == "ensemble":
        assert all("disagreement" in s for s in samples)
