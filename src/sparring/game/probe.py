"""The defender measured during training: a fixed prompt set every few rounds (``evaluation.probe``).

Latest-iterate play can cycle: the defender closes the hole the attacker found today and reopens
one it closed before. The probe shows it. After every ``every`` rounds the live defender answers
the same prompts (``samples`` from each set, drawn once), the evaluation judge (else the training
judge) scores them, and the round's line of ``metrics.jsonl`` gets

- ``probe/asr``: the attack success rate over the probe's harmful prompts;
- ``probe/asr/<group>``: the same per group (the judge's label ``group_by``: the arena's gold
  judge labels every prompt with its framing);
- ``probe/reopened``: how many times so far a group closed earlier (ASR at or below ``closed``)
  has opened again (at or above ``reopened``), summed over groups
  (:func:`sparring.evaluation.metrics.reopenings`); ``probe/closed``: groups closed now.

The defender answers under the global RNG forked and seeded by the round, so the probe never
changes what training does, and a resumed run measures what the uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from sparring import runs
from sparring.config import ProbeConfig, RunConfig
from sparring.evaluation.evaluate import load_prompt_file, pick, score
from sparring.evaluation.metrics import reopenings
from sparring.judges.base import attack_success_rate
from sparring.runtime import forked_rng

PREFIX = "probe/asr/"


class RoundProbe:
    """The fixed prompt set, the judge that scores it and the per-group ASR history."""

    def __init__(self, cfg: ProbeConfig, *, judge, seed: int):
        self.cfg = cfg
        self.judge = judge
        self.seed = seed
        self.prompts = [
            p for src in cfg.prompts for p in pick(load_prompt_file(src), cfg.samples, seed)
        ]
        self.history: dict[str, list[float | None]] = defaultdict(list)

    @classmethod
    def for_run(
        cls, cfg: ProbeConfig | None, judge, run: RunConfig, step: int
    ) -> RoundProbe | None:
        """The run's probe (None without ``evaluation.probe``); resumed at ``step``, its history
        is read back from the metrics."""
        if cfg is None:
            return None
        probe = cls(cfg, judge=judge, seed=run.evaluation.seed)
        if step:
            for row in runs.read_jsonl(run.run_dir() / "metrics.jsonl"):
                if row.get("step", 0) <= step:
                    probe.record(row)
        return probe

    def due(self, planned, plan) -> bool:
        """Whether ``planned`` is the last step of a round the probe measures."""
        ends_round = planned.step == len(plan) or plan[planned.step].round != planned.round
        return ends_round and planned.round % self.cfg.every == 0

    def measure(self, defender, round_: int) -> dict[str, float]:
        """The probe's figures for the live ``defender`` after round ``round_``."""
        with forked_rng(self.seed * 7_919 + round_):
            answers = defender.generate(self.prompts).texts
        judged = score(self.judge, self.prompts, answers)
        p_safe = np.asarray(judged.p_safe, dtype=np.float64)
        labels = judged.labels
        harmful = np.array([h != "false" for h in labels.get("harmful", ["true"] * len(p_safe))])
        groups = labels.get(self.cfg.group_by)
        out = {"probe/asr": _rate(attack_success_rate(p_safe[harmful]))}
        if groups is not None:
            for g in sorted({str(g) for g, h in zip(groups, harmful, strict=True) if h}):
                rows = np.array([str(x) == g for x in groups]) & harmful
                out[PREFIX + g] = _rate(attack_success_rate(p_safe[rows]))
        self.record(out)
        return {**out, **self.cycling()}

    def record(self, figures: dict[str, Any]) -> None:
        """Add one round's per-group ASR to the history (also used to rebuild it on resume)."""
        for key, value in figures.items():
            if key.startswith(PREFIX):
                self.history[key[len(PREFIX) :]].append(value)

    def cycling(self) -> dict[str, float]:
        c = self.cfg
        reopened = sum(reopenings(s, c.closed, c.reopened) for s in self.history.values())
        closed = sum(
            1 for s in self.history.values() if (last := _last(s)) is not None and last <= c.closed
        )
        return {"probe/reopened": float(reopened), "probe/closed": float(closed)}


def _rate(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _last(series: list[float | None]) -> float | None:
    for v in reversed(series):
        if v is not None and math.isfinite(v):
            return v
    return None
