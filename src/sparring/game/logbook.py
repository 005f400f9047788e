"""What a run records: per-step metrics, samples, the progress bar and the closing summary."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any

import numpy as np

from sparring.game.plan import PlannedStep
from sparring.game.rollout import Rollout, rate
from sparring.judges.base import attack_success_rate, mean_p_safe
from sparring.runtime import gather, mean_over_ranks, progress_bar


class Timer:
    """Accumulates wall time per named phase."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - t0


def step_metrics(
    planned: PlannedStep,
    role: str,
    rollout: Rollout,
    scores: np.ndarray,
    stats: dict[str, float],
    world: int,
) -> dict[str, Any]:
    """One line of ``metrics.jsonl`` (less the history size, skip reason and timings): the
    training judge's figures on the attacks, novelty, lengths and the update's statistics,
    averaged over the ranks."""
    p_safe = rollout.p_safe
    attack_rows, is_benign, is_direct = rollout.attack_rows, rollout.is_benign, rollout.is_direct
    att_gen, def_gen = rollout.attacker_gen, rollout.defender_gen
    live, live_att = rollout.live_rows, rollout.live_attacks  # rows someone played
    row: dict[str, Any] = {
        "step": planned.step,
        "round": planned.round,
        "stage": planned.stage,
        "player": role,
    }
    row.update(
        mean_over_ranks(
            {
                # rows a judge left unscored (NaN) are out of the update and of its mean
                "reward": _finite_mean(scores),
                "p_safe": rate(mean_p_safe(p_safe[attack_rows])),
                "asr": rate(attack_success_rate(p_safe[attack_rows])),
                "judge/nonfinite": float(np.sum(~np.isfinite(p_safe[live]))),
                "attack/fallback": float(np.mean(rollout.fallback[live_att])),
                "novelty/selfbleu": float(np.mean(rollout.novelty["selfbleu"][live_att])),
                "novelty/cosine": float(np.mean(rollout.novelty["cosine"][live_att])),
                "len/attack": float(att_gen.response_mask.sum(-1)[live_att].float().mean())
                if att_gen is not None
                else 0.0,
                "len/response": float(def_gen.response_mask.sum(-1)[live].float().mean()),
                **(
                    {"benign/helpful": _finite_mean(scores[is_benign])}
                    if planned.stage == "defend" and is_benign.any()
                    else {}
                ),
                **(
                    {
                        "seeds/p_safe": rate(mean_p_safe(p_safe[is_direct])),
                        "seeds/asr": rate(attack_success_rate(p_safe[is_direct])),
                    }
                    if is_direct.any()
                    else {}
                ),
                **rollout.eval_figures,
                **refusal_figures(rollout),
                **{k: float(v) for k, v in stats.items()},
            },
            world,
        )
    )
    return row


def _finite_mean(x) -> float:
    """Mean of the finite entries (NaN when there are none)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


@functools.cache
def _refusal_detector():
    """garak's refusal detector, or None where garak's strings are not installed."""
    from sparring.errors import DataError
    from sparring.judges.refusal import RefusalDetector

    try:
        return RefusalDetector()
    except DataError:
        return None


def refusal_figures(rollout: Rollout) -> dict[str, float]:
    """The share of the defender's answers that refuse (garak's refusal strings, the rule
    ``sparring eval`` reports), on harmful rows (attacks and seeds) and on benign ones: the
    learning curve of refusing, step by step, beside the judge's own figures. Empty when
    garak is not installed."""
    det = _refusal_detector()
    if det is None:
        return {}
    live = rollout.live_rows
    refused = np.asarray(det.refuses_batch(rollout.defender_gen.texts), dtype=np.float64)[live]
    benign = rollout.is_benign[live]
    out = {"refusal/harmful": float(np.mean(refused[~benign]))} if (~benign).any() else {}
    if benign.any():
        out["refusal/benign"] = float(np.mean(refused[benign]))
    return out


def sample_rows(
    planned: PlannedStep, rollout: Rollout, scores: np.ndarray, world: int, limit: int | None
) -> list[dict[str, Any]]:
    """Lines of ``samples.jsonl``: one per answer, with its attack (or seed, or benign prompt),
    the judge's verdict and the learner's reward; gathered over the ranks."""
    judged, k_def = rollout.judged, rollout.answers
    is_benign, is_direct, live = rollout.is_benign, rollout.is_direct, rollout.live_rows
    per_turn = len(rollout.attacks) // rollout.turns
    rows = []
    for i, prompt in enumerate(rollout.prompts):
        a = i // k_def
        if not live[i]:  # a stopped dialogue's placeholder: nobody played it
            continue
        row: dict[str, Any] = {
            "step": planned.step,
            "round": planned.round,
            "stage": planned.stage,
            "benign": bool(is_benign[i]),
        }
        if is_direct[i]:  # the defender answered the seed itself
            row.update({"seed": prompt, "prompt": prompt})
        elif not is_benign[i]:
            row.update(
                {
                    "seed": rollout.seeds[a],
                    "attack_raw": rollout.raw_attacks[a],
                    "attack": rollout.attacks[a],
                    "selfbleu": float(rollout.novelty["selfbleu"][a]),
                    "cosine": float(rollout.novelty["cosine"][a]),
                }
            )
            if rollout.dialogues is not None:  # multi-turn: the turn and all that led to it
                row["turn"] = a // per_turn + 1
                row["dialogue"] = list(rollout.dialogues[a].messages)
        else:
            row["prompt"] = prompt
        row["response"] = rollout.defender_gen.texts[i]
        row["p_safe"] = float(judged.p_safe[i])
        if planned.stage == "defend":
            row["reward"] = float(scores[i])
        elif a < len(rollout.attacks):
            row["reward"] = float(scores[a])
        for k, v in judged.extras.items():
            row[k] = float(v[i])
        for k, v in judged.labels.items():
            row[k] = v[i]
        rows.append(row)
    rows = gather(rows, world)
    return rows if limit is None else rows[:limit]


def endpoint_figures(**parts) -> dict[str, float]:
    """Requests paid, cache hits, failures and cost so far of each part that has an endpoint
    client (``endpoint/<part>/<figure>``); empty when none has."""
    out: dict[str, float] = {}
    for role, part in parts.items():
        client = getattr(part, "client", None)
        if client is not None:
            for k in ("requests", "cache_hits", "failures", "cost"):
                out[f"endpoint/{role}/{k}"] = float(client.stats[k])
    return out


def eval_summary(result: dict[str, Any] | None, when: str) -> dict[str, Any]:
    """Headline figures of an evaluation: ASR per prompt set (evaluation judge where there is
    one), over-refusal, attacker diversity."""
    if not result:
        return {}
    out: dict[str, Any] = {}
    for name, entry in result["defender"]["sets"].items():
        which = "eval_judge" if entry.get("eval_judge") else "judge"
        out[f"{when}/asr/{name} ({which})"] = entry[which]["asr"]
    refusal = result["defender"].get("over_refusal") or {}
    for which in ("eval_judge", "judge"):
        if refusal.get(which):
            out[f"{when}/over_refusal ({which})"] = refusal[which]["rate"]
            break
    diversity = result["attacker"]["diversity"]
    for key in ("1-selfbleu", "1-cosine"):
        if key in diversity:
            out[f"{when}/attacks/{key}"] = diversity[key]
    return out


def stage_summary(first_rows, last_rows) -> dict[str, Any]:
    """First and last step's training figures of each stage played."""
    out: dict[str, Any] = {}
    for stage in ("defend", "attack"):
        if stage in last_rows:
            for key in ("p_safe", "asr", "reward", "novelty/selfbleu", "novelty/cosine"):
                out[f"{stage}/{key}/first"] = first_rows[stage].get(key)
                out[f"{stage}/{key}/last"] = last_rows[stage].get(key)
    return out


class Bar:
    """The run's progress bar: round and stage, steps done, time left, the last step's figures."""

    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def describe(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def advance(self, row: dict[str, Any]) -> None:
        if self.progress is not None:
            info = f"reward {row['reward']:.3f}  P(safe) {row['p_safe']:.3f}  kl {row.get('kl', 0.0):.3f}"
            self.progress.update(self.task, advance=1, info=info)


@contextmanager
def run_progress(enabled: bool, total: int, done: int):
    with progress_bar(enabled, remaining=True, info=True) as progress:
        if progress is None:
            yield Bar(None, None)
            return
        task = progress.add_task("starting", total=total, completed=done, info="")
        yield Bar(progress, task)
