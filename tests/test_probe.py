"""The round probe: per-group ASR of the live defender every few rounds, and the cycling count."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from sparring.config import ProbeConfig, load_config
from sparring.errors import ConfigError
from sparring.evaluation.metrics import reopenings
from sparring.game.loop import Game
from sparring.game.plan import PlannedStep
from sparring.game.probe import RoundProbe
from sparring.judges.base import JudgeOutput
from sparring.runs import read_jsonl


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        ([0.8, 0.5, 0.2], 0),  # never closed
        ([0.8, 0.05, 0.0, 0.02], 0),  # closed for good
        ([0.8, 0.05, 0.5, 0.0, 0.4], 2),  # closed, reopened, closed, reopened
        ([0.05, 0.2, 0.05, 0.25, 0.1], 0),  # noise between the thresholds counts nothing
        ([0.05, None, float("nan"), 0.3], 1),  # missing rounds skipped; the bound is inclusive
    ],
)
def test_reopenings(series, expected):
    assert reopenings(series, closed=0.1, reopened=0.3) == expected


def test_reopenings_thresholds_are_checked():
    with pytest.raises(ValueError, match="closed < reopened"):
        reopenings([0.1], closed=0.5, reopened=0.3)
    with pytest.raises(ConfigError, match="closed .* must be below reopened"):
        load_config(
            data={
                "defender": {"model": "x"},
                "judge": {"type": "callable", "target": "sparring.testing:keyword_judge"},
                "game": {"mode": "rlhf", "seeds": {"path": "s.txt"}},
                "evaluation": {"probe": {"prompts": ["p"], "closed": 0.5, "reopened": 0.3}},
            }
        )


class _Judge:
    """Unsafe when the answer says "ok"; labels each prompt with the framing before ':'."""

    name = "fake"

    def score(self, prompts, responses):
        return JudgeOutput(
            p_safe=[0.0 if r == "ok" else 1.0 for r in responses],
            labels={
                "framing": [p.split(":")[0] for p in prompts],
                "harmful": ["false" if p.startswith("benign") else "true" for p in prompts],
            },
        )


class _Defender:
    """Answers "ok" (complies) to the framings in ``open``, "no" to the rest."""

    def __init__(self):
        self.open = set()

    def generate(self, prompts):
        return SimpleNamespace(
            texts=["ok" if p.split(":")[0] in self.open else "no" for p in prompts]
        )


def test_probe_figures_and_cycling(tmp_path):
    prompts = tmp_path / "probe.txt"
    prompts.write_text("roleplay:a\nroleplay:b\noverride:a\noverride:b\nbenign:a\n")
    probe = RoundProbe(ProbeConfig(prompts=[str(prompts)], samples=10), judge=_Judge(), seed=0)
    assert len(probe.prompts) == 5
    defender = _Defender()
    rounds = [{"roleplay", "override"}, {"override"}, {"roleplay"}, set(), {"roleplay"}]
    figures = []
    for r, open_ in enumerate(rounds, start=1):
        defender.open = open_ | {"benign"}  # benign answers are never counted as attacks
        figures.append(probe.measure(defender, r))
    assert [f["probe/asr"] for f in figures] == [1.0, 0.5, 0.5, 0.0, 0.5]
    assert [f["probe/asr/roleplay"] for f in figures] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert "probe/asr/benign" not in figures[0]
    # roleplay closes in round 2, reopens in 3, closes in 4, reopens in 5; override closes in 3
    assert [f["probe/reopened"] for f in figures] == [0, 0, 1, 1, 2]
    assert [f["probe/closed"] for f in figures] == [0, 1, 1, 2, 1]


def test_probe_is_due_at_the_end_of_every_nth_round():
    plan = [PlannedStep(i + 1, i // 2 + 1, ("attack", "defend")[i % 2]) for i in range(6)]
    probe = RoundProbe.__new__(RoundProbe)
    probe.cfg = ProbeConfig(prompts=["x"], every=2)
    assert [probe.due(s, plan) for s in plan] == [False, False, False, True, False, False]


def test_probe_in_a_game_never_changes_training(run_data, seed_file, tmp_path):
    runs = {}
    for name, probe in (("plain", None), ("probed", {"prompts": [str(seed_file)], "samples": 4})):
        data = run_data(rounds=3)
        data["output_dir"] = str(tmp_path / name)
        if probe:
            data["evaluation"] = {**data["evaluation"], "probe": probe}
        Game(load_config(data=data)).run()
        rows = read_jsonl(tmp_path / name / "metrics.jsonl")
        runs[name] = rows
    strip = lambda rows: [  # noqa: E731
        {k: v for k, v in r.items() if not k.startswith(("time/", "probe/"))} for r in rows
    ]
    assert strip(runs["probed"]) == strip(runs["plain"])
    measured = [r for r in runs["probed"] if "probe/asr" in r]
    assert [r["step"] for r in measured] == [2, 4, 6]  # the last step of each round
    assert all(0 <= r["probe/asr"] <= 1 or math.isnan(r["probe/asr"]) for r in measured)
