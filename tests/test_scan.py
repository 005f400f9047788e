"""`sparring scan`: any model measured as it is, on held-out sets, with no run folder."""

from __future__ import annotations

import json

import pytest
import yaml

from sparring.cli import main
from sparring.evaluation.scan import scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def judge_file(tmp_path):
    path = tmp_path / "judge.yaml"
    spec = {"type": "callable", "target": "sparring.testing:keyword_judge"}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _scan(tiny_models, seed_file, benign_file, out, judge=None, **kw):
    return scan(
        str(tiny_models["llama"]),
        prompts=[str(seed_file)],
        benign=str(benign_file),
        judge=judge,
        samples=6,
        max_new_tokens=6,
        out=out,
        **kw,
    )


def test_a_scan_measures_a_model_folder_and_writes_its_report(
    tiny_models, seed_file, benign_file, judge_file, tmp_path
):
    """Every harmful prompt and benign prompt answered and judged; figures per set from the
    judge and the refusal detector with their agreement; over-refusal with its detectable rise;
    keyed answers: a second scan gives the same answers."""
    result = _scan(tiny_models, seed_file, benign_file, tmp_path / "s1", judge=judge_file)
    entry = result["sets"]["seeds"]
    assert entry["n"] == 6 and entry["judge"]["asr"] is not None
    assert entry["refusal_rate"] is not None and "refusal_by" in entry
    assert "judge~refusal" in result["agreement"]["seeds"]
    over = result["over_refusal"]["judge"]
    assert over["rate"] is not None and over["mde_rise"] > 0
    assert result["judges"]["judge"] == "sparring.testing:keyword_judge"
    rows = [json.loads(line) for line in (tmp_path / "s1" / "samples.jsonl").open()]
    assert len(rows) == 6 + min(6, len(benign_file.read_text().split("\n")) - 1)
    page = (tmp_path / "s1" / "report.html").read_text()
    assert "<script" not in page and "Harmful prompt sets" in page
    again = _scan(tiny_models, seed_file, benign_file, tmp_path / "s2", judge=judge_file)
    second = [json.loads(line) for line in (tmp_path / "s2" / "samples.jsonl").open()]
    assert [r["response"] for r in rows] == [r["response"] for r in second]
    assert again["sets"] == result["sets"]


def test_the_default_judge_is_the_refusal_rule(tiny_models, seed_file, benign_file, tmp_path):
    result = _scan(tiny_models, seed_file, benign_file, tmp_path / "s")
    assert result["judges"]["judge"] == "refusal-rule"
    assert result["over_refusal"]["judge"]["rate"] is not None  # helpful = not refused


def test_the_scan_command(
    tiny_models, seed_file, benign_file, judge_file, tmp_path, capsys, monkeypatch
):
    """--json for scripts; without --out, scans/<model> and never a folder that holds a scan;
    a target that is none of a folder, a target file or openai:M@URL is bad input (exit 2)."""
    monkeypatch.chdir(tmp_path)
    args = [
        "scan",
        str(tiny_models["llama"]),
        "--prompts",
        str(seed_file),
        "--benign",
        str(benign_file),
        "--judge",
        str(judge_file),
        "--samples",
        "3",
        "--max-new-tokens",
        "4",
    ]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sets"]["seeds"]["n"] == 3 and printed["folder"] == "scans/llama"
    assert main([*args, "--quiet"]) == 0
    assert (tmp_path / "scans" / "llama-2" / "scan.json").is_file()
    assert main(["scan", str(tmp_path / "no-such-model")]) == 2
    assert "not a model folder" in capsys.readouterr().err
