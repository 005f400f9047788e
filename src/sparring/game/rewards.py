"""The players' scalar rewards, from judge scores and novelty."""

from __future__ import annotations

import numpy as np
import torch

from sparring.rl.core import turn_returns


def defender_scores(
    p_safe: np.ndarray, helpful: np.ndarray | None = None, benign: np.ndarray | None = None
) -> np.ndarray:
    """P(safe) for attack rows; the helpfulness score for benign rows."""
    out = np.asarray(p_safe, dtype=np.float64).copy()
    if benign is not None and benign.any():
        out[benign] = np.asarray(helpful, dtype=np.float64)[benign]
    return out


def attacker_scores(
    p_safe: np.ndarray,
    novelty_penalty: np.ndarray,
    fallback: np.ndarray | None = None,
    fallback_penalty: float = 1.0,
) -> np.ndarray:
    """P(unsafe) minus the weighted novelty penalty (w_bleu * SelfBLEU + w_emb * meanCos).

    An attack with nothing left after cleaning (``fallback``: the defender was shown the seed
    instead) earns ``-fallback_penalty``, not the seed's success: writing nothing must not pay.
    """
    out = 1.0 - np.asarray(p_safe, dtype=np.float64) - np.asarray(novelty_penalty, dtype=np.float64)
    if fallback is not None and np.any(fallback):
        out[np.asarray(fallback, dtype=bool)] = -fallback_penalty
    return out


def stage_scores(rollout, cfg) -> np.ndarray:
    """The learner's reward for each row of its generation: the defender's per answer (P(safe),
    or helpfulness on benign prompts), the attacker's per attack (P(unsafe) less the novelty
    penalty). ``rollout`` is a :class:`~sparring.game.rollout.Rollout`, ``cfg`` the run config."""
    if rollout.stage == "attack" and rollout.live is not None:
        return dialogue_attacker_scores(rollout, cfg)
    if rollout.stage == "defend":
        is_benign = rollout.is_benign
        helpful = None
        if is_benign.any():
            helpful = np.asarray(rollout.judged.extras[cfg.game.benign.score_key], dtype=np.float64)
        return defender_scores(rollout.p_safe, helpful, is_benign)
    return attacker_scores(
        rollout.p_safe, rollout.penalty, rollout.fallback, cfg.attacker.fallback_penalty
    )


def dialogue_attacker_scores(rollout, cfg) -> np.ndarray:
    """The attacker's reward for each turn it wrote in multi-turn play (rows laid out turn by
    turn, :mod:`sparring.game.dialogue`). Each played turn costs ``game.turn_cost``; the turn
    an episode ends at earns the episode's outcome, P(unsafe) of its answer less the novelty
    penalty of the whole dialogue; a turn with nothing left after cleaning costs
    ``attacker.fallback_penalty``. Each turn is then credited with its return over the turns
    that follow (:func:`~sparring.rl.core.turn_returns`, discounted by ``game.turn_discount``),
    so the turn that set up a later success is paid for it. Rows of stopped episodes get 0
    (they are masked out of the update)."""
    turns = rollout.turns
    n = len(rollout.attacks) // turns
    live = rollout.live_attacks.reshape(turns, n).T  # [E, T]
    p_safe = rollout.first_answers.reshape(turns, n).T
    fallback = rollout.fallback.reshape(turns, n).T & live
    r = np.where(live, -cfg.game.turn_cost, 0.0) - cfg.attacker.fallback_penalty * fallback
    ends = live.sum(1) - 1
    e = np.arange(n)
    penalty = rollout.penalty.reshape(turns, n)[0]
    r[e, ends] += 1.0 - p_safe[e, ends] - penalty
    returns = turn_returns(
        torch.as_tensor(r, dtype=torch.float64), torch.as_tensor(live), cfg.game.turn_discount
    ).numpy()
    return np.where(live, returns, 0.0).T.reshape(-1)
