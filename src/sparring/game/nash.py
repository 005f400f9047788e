"""The empirical game between two pools of snapshots, and its Nash equilibrium.

``payoff[i, j]`` is what attacker snapshot ``i`` wins against defender snapshot ``j`` (the mean
P(unsafe) of the defender's answers to its attacks). The game is zero-sum: the attacker (rows)
maximises it, the defender (columns) minimises it. PSRO (Lanctot et al. 2017) draws each
learner's opponent from the Nash mixture of this matrix; the Nash gap says how far any pair of
mixtures is from that equilibrium, in payoff units.

Pure NumPy, with SciPy's linear-programming solver (HiGHS) for the equilibrium.
"""

from __future__ import annotations

import numpy as np


def _check(payoff: np.ndarray) -> np.ndarray:
    m = np.asarray(payoff, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"payoff must be a non-empty 2-D matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("payoff has non-finite entries")
    return m


def solve_zero_sum(payoff: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(x, y, value)``: the maximin mixture ``x`` of the rows, the minimax mixture ``y`` of the
    columns and the game's value ``x @ payoff @ y``.

    Two linear programmes (von Neumann's minimax theorem: both give the same value): the rows
    maximise ``v`` subject to ``(x @ payoff)[j] >= v`` for every column, the columns minimise
    ``w`` subject to ``(payoff @ y)[i] <= w`` for every row, each mixture on the simplex. Among
    several equilibria the solver returns one.
    """
    from scipy.optimize import linprog

    m = _check(payoff)
    rows, cols = m.shape
    # rows: variables (x, v); minimise -v; for each column j: v - x @ m[:, j] <= 0
    res_x = linprog(
        c=np.r_[np.zeros(rows), -1.0],
        A_ub=np.c_[-m.T, np.ones(cols)],
        b_ub=np.zeros(cols),
        A_eq=np.r_[np.ones(rows), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * rows + [(None, None)],
        method="highs",
    )
    # columns: variables (y, w); minimise w; for each row i: m[i] @ y - w <= 0
    res_y = linprog(
        c=np.r_[np.zeros(cols), 1.0],
        A_ub=np.c_[m, -np.ones(rows)],
        b_ub=np.zeros(rows),
        A_eq=np.r_[np.ones(cols), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * cols + [(None, None)],
        method="highs",
    )
    if not (res_x.success and res_y.success):  # a bounded feasible LP: only on solver failure
        raise RuntimeError(f"the Nash LP failed: {res_x.message}; {res_y.message}")
    x = _simplex(res_x.x[:rows])
    y = _simplex(res_y.x[:cols])
    return x, y, float(x @ m @ y)


def _simplex(p: np.ndarray) -> np.ndarray:
    """Clip the solver's round-off (-1e-12) and renormalise."""
    p = np.clip(p, 0.0, None)
    return p / p.sum()


def nash_gap(payoff: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """How far the mixtures ``(x, y)`` are from an equilibrium: the best row's payoff against
    ``y`` minus the best column's payoff against ``x`` (``max_i (payoff @ y)[i] - min_j
    (x @ payoff)[j]``). Never negative; 0 exactly at a Nash equilibrium; the sum of what each
    side would gain by switching to its best response (NashConv)."""
    m = _check(payoff)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != (m.shape[0],) or y.shape != (m.shape[1],):
        raise ValueError(f"mixtures of shapes {x.shape}, {y.shape} for a {m.shape} payoff")
    return float(np.max(m @ y) - np.min(x @ m))


def one_hot(n: int, i: int) -> np.ndarray:
    """The pure strategy ``i`` of ``n`` as a mixture."""
    p = np.zeros(n)
    p[i] = 1.0
    return p
