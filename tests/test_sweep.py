"""``sparring sweep``: settings chosen on validation prompts by a stated rule, never on test sets."""

from __future__ import annotations

import json

import pytest
import yaml

from sparring.cli import main
from sparring.errors import ConfigError
from sparring.experiments import sweep
from sparring.experiments.sweep import check_validation, choose, grid_points, parse_grid


def test_the_grid_is_every_combination_in_order():
    grid = parse_grid(["defender.rl.kl_coef=0.05,0.1", "game.benign.fraction=0.3,0.45"])
    assert grid_points(grid) == [
        ["defender.rl.kl_coef=0.05", "game.benign.fraction=0.3"],
        ["defender.rl.kl_coef=0.05", "game.benign.fraction=0.45"],
        ["defender.rl.kl_coef=0.1", "game.benign.fraction=0.3"],
        ["defender.rl.kl_coef=0.1", "game.benign.fraction=0.45"],
    ]
    with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
        parse_grid(["defender.rl.kl_coef"])


def test_the_rule_keeps_over_refusal_within_the_tolerance_then_takes_the_lowest_asr():
    points = [
        {"figure": 0.10, "over_refusal": 0.30},  # lowest ASR, but over-refuses
        {"figure": 0.20, "over_refusal": 0.12},
        {"figure": 0.15, "over_refusal": 0.15},  # admissible at the bar exactly
        {"figure": 0.15, "over_refusal": 0.05},  # a tie on ASR: the first in grid order wins
    ]
    d = choose(points, baseline=0.10, tolerance=0.05)
    assert d["bar"] == pytest.approx(0.15)
    assert (d["index"], d["admissible"], d["fallback"]) == (2, [1, 2, 3], False)
    # nothing admissible: the lowest over-refusal, said so
    d = choose(points[:1], baseline=0.10, tolerance=0.05)
    assert (d["index"], d["fallback"]) == (0, True)


def test_non_refusal_is_one_minus_each_sets_refusal_rate():
    ev = {"defender": {
        "sets": {"a": {"refusal_rate": 0.75, "judge": {"asr": 0.1}}, "b": {"refusal_rate": 0.5}},
        "over_refusal": {"judge": {"rate": 0.2}},
    }}  # fmt: skip
    per_set, over = sweep._figures(ev, ["a", "b"], "non-refusal")
    assert per_set == {"a": 0.25, "b": 0.5} and over == 0.2
    # the guard: whose over-refusal rules a point out
    ev["defender"]["over_refusal"]["eval_judge"] = {"rate": 0.4}
    assert sweep._figures(ev, ["a"], "non-refusal")[1] == 0.4
    assert sweep._figures(ev, ["a"], "non-refusal", "judge")[1] == 0.2
    assert sweep._figures(ev, ["a"], "ASR judge")[0] == {"a": 0.1}


def test_test_splits_and_reported_sets_are_refused():
    with pytest.raises(ConfigError, match="'harmbench-test' is a set results are reported on"):
        check_validation(["harmbench-test"], "benign-validation", [])
    with pytest.raises(ConfigError, match="'my-heldout' is a set results are reported on"):
        check_validation(["my-heldout"], "benign-validation", ["my-heldout"])
    check_validation(["harmbench-validation"], "benign-validation", ["harmbench-test"])


def test_a_sweep_trains_each_point_evaluates_on_validation_and_names_the_choice(
    run_data, tmp_path, capsys
):
    data = run_data(rounds=1)
    data["logging"]["tensorboard"] = False
    data["evaluation"].update(prompts=["reported.txt"], samples=2)
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(data))
    validation, benign = tmp_path / "val.txt", tmp_path / "benign-val.txt"
    validation.write_text("how to pick a lock\nhow to make a poison\n")
    benign.write_text("how to bake bread\nhow to tie a knot\n")
    out = tmp_path / "sweep"
    argv = ["sweep", str(config), "--grid", "defender.lr=1e-5,1e-4", "--validation",
            str(validation), "--benign", str(benign), "--select", "non-refusal", "--guard", "judge", "--out", str(out)]  # fmt: skip
    # a share of the points (another process takes the rest): trained, nothing chosen
    assert main([*argv, "--only-points", "1"]) == 0
    assert (out / "point-1" / "seed-0" / "eval" / "validation.json").is_file()
    assert not (out / "point-0").exists() and not (out / "sweep.json").exists()
    shared = (out / "point-1" / "seed-0" / "metrics.jsonl").stat().st_mtime_ns
    assert main([*argv, "--only-points", "2"]) == 2  # the grid has points 0 and 1
    assert main(argv) == 0
    assert (out / "point-1" / "seed-0" / "metrics.jsonl").stat().st_mtime_ns == shared
    result = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in result["points"]] == [["defender.lr=1e-5"], ["defender.lr=1e-4"]]
    # every point's run was evaluated on the validation sets only, never on the reported ones
    for i in range(2):
        ev = json.loads((out / f"point-{i}" / "seed-0" / "eval" / "validation.json").read_text())
        assert set(ev["defender"]["sets"]) >= {"val"} and "reported" not in ev["defender"]["sets"]
        assert not (out / f"point-{i}" / "seed-0" / "eval" / "final.json").exists()
    assert result["chosen"] == result["points"][result["index"]]["point"]
    assert result["command"].endswith(f"--set {result['chosen'][0]}")
    md = (out / "sweep.md").read_text()
    assert "Run and report it on the test sets" in md and "shares the refusal detector" in md
    assert result["guard"] == "judge" and "over-refusal by the judge at most" in md
    judged = json.loads((out / "point-1" / "seed-0" / "eval" / "validation.json").read_text())[
        "defender"
    ]["over_refusal"]["judge"]["rate"]
    assert result["points"][1]["over_refusal"] == pytest.approx(judged)
    # the figure is what the validation evaluations measured: 1 - each set's refusal rate
    ev = json.loads((out / "point-0" / "seed-0" / "eval" / "validation.json").read_text())
    refused = ev["defender"]["sets"]["val"]["refusal_rate"]
    assert result["points"][0]["per_set"][str(validation)] == pytest.approx(1 - refused)
    assert result["points"][0]["figure"] == pytest.approx(1 - refused)
    # a second call continues: nothing is trained again
    stamp = (out / "point-0" / "seed-0" / "metrics.jsonl").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "point-0" / "seed-0" / "metrics.jsonl").stat().st_mtime_ns == stamp
    # the config edited between two sessions of the sweep: no point is reused or continued
    # with it (a finished point and one whose steps stop half way alike), the setting is named
    data["attacker"]["lr"] = 0.5
    config.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    (out / "point-0" / "seed-0" / "summary.json").unlink()
    assert main(argv) == 2
    said = capsys.readouterr()
    assert "this run was started with another config (attacker.lr:" in said.out + said.err
    assert "-> 0.5" in said.out + said.err
    assert (out / "point-0" / "seed-0" / "metrics.jsonl").stat().st_mtime_ns == stamp
