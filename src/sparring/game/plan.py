"""The sequence of steps a run plays: rounds of defend and attack stages."""

from __future__ import annotations

from dataclasses import dataclass

from sparring.config import GameConfig

#: which stages each mode plays
MODE_STAGES = {"gpo": {"defend", "attack"}, "rlhf": {"defend"}, "attacker": {"attack"}}


@dataclass(frozen=True)
class PlannedStep:
    step: int  # 1-based global step
    round: int  # 1-based
    stage: str  # "defend" | "attack"


def build_plan(game: GameConfig) -> list[PlannedStep]:
    """Every step of the run in order. Stages the mode does not play are left out."""
    plan: list[PlannedStep] = []
    for r in range(1, game.rounds + 1):
        for stage in game.schedule:
            if stage.stage not in MODE_STAGES[game.mode]:
                continue
            for _ in range(stage.steps):
                plan.append(PlannedStep(len(plan) + 1, r, stage.stage))
    return plan
