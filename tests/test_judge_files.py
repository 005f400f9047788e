"""Which files a judge is: hashes recorded in the run folder and in every evaluation, so two
judges with one name but other weights are told apart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import sparring.testing
from sparring.config import load_config
from sparring.evaluation.evaluate import evaluate_run
from sparring.game.loop import Game
from sparring.judges import build_judge
from sparring.judges.fingerprint import judge_files, sha256_of
from sparring.judges.registry import parse_judge_spec
from sparring.testing import build_tiny_classifier


def test_a_folder_hash_follows_its_files_not_its_place(tmp_path):
    a = build_tiny_classifier(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert sha256_of(a) == sha256_of(b)  # the same judge copied elsewhere
    (b / "config.json").write_text((b / "config.json").read_text() + " ")
    assert sha256_of(a) != sha256_of(b)  # a changed file
    c = tmp_path / "c"
    shutil.copytree(a, c)
    (c / "config.json").rename(c / "other.json")
    assert sha256_of(a) != sha256_of(c)  # a renamed file


def test_nested_judges_and_callables_are_hashed(tmp_path):
    folder = build_tiny_classifier(tmp_path / "clf")
    spec = {
        "type": "ensemble",
        "judges": [
            {"type": "classifier", "model": str(folder), "positive_label": "LABEL_0"},
            {"type": "callable", "target": "sparring.testing:keyword_judge"},
        ],
    }
    judge = build_judge(spec)
    module = Path(sparring.testing.__file__)
    assert judge.files == {
        str(folder): sha256_of(folder),
        "sparring.testing:keyword_judge": sha256_of(module),
    }
    assert judge_files(parse_judge_spec(spec)) == judge.files


def test_the_run_and_its_evaluations_record_the_judges_files(run_data, tmp_path):
    data = run_data(rounds=1)
    folder = build_tiny_classifier(tmp_path / "clf")
    data["eval_judge"] = {"type": "classifier", "model": str(folder), "positive_label": "LABEL_0"}
    game = Game(load_config(data=data))
    game.run()
    recorded = json.loads((game.run_dir / "judges.json").read_text())
    assert recorded["eval_judge"] == {str(folder): sha256_of(folder)}
    assert list(recorded["judge"]) == ["sparring.testing:keyword_judge"]
    ev = evaluate_run(game.run_dir, samples=2, name="check")
    assert ev["judge_files"] == recorded


def test_a_large_files_hash_is_read_once_and_remembered_on_disk(tmp_path, monkeypatch):
    """A judge model of gigabytes is hashed once, not at every evaluation that records it: the
    hash is kept under SPARRING_HOME by path, size and modification time."""
    import os

    import sparring._files as files

    monkeypatch.setenv("SPARRING_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(files, "REMEMBER_BYTES", 4)
    monkeypatch.setattr(files, "_HASHES", {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights v1")
    first = files.sha256_file_remembered(weights)
    assert first == files.sha256_file(weights)
    assert (tmp_path / "home" / "file-hashes.json").is_file()
    # a new process (no memory) reads the remembered hash without reading the file
    monkeypatch.setattr(files, "_HASHES", {})
    monkeypatch.setattr(files, "sha256_file", lambda p: "read again")
    assert files.sha256_file_remembered(weights) == first
    # a changed file (new size or time) is read again
    weights.write_bytes(b"weights v2, longer")
    os.utime(weights, ns=(1, 1))
    assert files.sha256_file_remembered(weights) == "read again"
