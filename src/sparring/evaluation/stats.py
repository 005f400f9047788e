"""What an interval covers: the statistics behind every figure that decides "better".

Two designs, two procedures, never mixed:

- **One run, before and after** (``sparring eval --compare``, the training run's closing
  table): the same model family answers the same prompts twice. What varies is the prompts and
  the sampled answers, so the interval resamples prompts (:func:`paired_bootstrap`). It
  says nothing about another training seed.
- **Arm against arm** (``sparring experiment``): each arm is trained once per seed, and runs
  of one arm differ from seed to seed by more than their prompts do (the between-seed
  variance). The unit of replication is the seed: each seed gives one paired difference (arm
  minus reference on the common prompts of that seed), and the interval is Student's t over
  those differences (:func:`seed_level_difference`, ``scipy.stats``). Holm's step-down
  correction (``statsmodels``) adjusts the p-values across the arms compared on one figure
  (:func:`holm`); :func:`minimal_detectable_difference` says how large a difference the seeds
  could have detected, so a table that found nothing says what it could have found;
  :func:`minimal_detectable_rise` does the same for an over-refusal rate and its prompt count.

``benchmarks/stats.py`` simulates experiments with known zero and non-zero differences and
prints each procedure's false-positive rate and power.

A third use, a release gate (``sparring regress --max-asr``), asks whether one model's attack
success rate is above a bar: :func:`asr_bounds` gives one-sided exact (Clopper-Pearson) bounds
of the rate over attacks and :func:`gate_decision` applies a rule to them. ``lower`` (fail only
when surely unsafe) bounds the chance of blocking a release whose true rate is at or below the
bar; ``upper`` (pass only when surely safe) bounds the chance of shipping one whose true rate
is above it. ``benchmarks/regress_gate.py`` simulates both, and the point-estimate rule they
replaced, on the same function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
POWER = 0.8


def minimal_detectable_difference(
    sd: float | None, n: int, *, confidence: float = CONFIDENCE, power: float = POWER
) -> float | None:
    """The smallest true mean difference a two-sided one-sample t-test over ``n`` per-seed
    differences of standard deviation ``sd`` detects with probability ``power`` at level
    ``1 - confidence`` (``statsmodels``' ``TTestPower``; the noncentral t, not the normal
    approximation, which is far too optimistic at 3 seeds). None below two seeds."""
    if sd is None or n < 2 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    from statsmodels.stats.power import TTestPower

    d = TTestPower().solve_power(nobs=n, alpha=1 - confidence, power=power, alternative="two-sided")
    return float(d) * float(sd)


def seed_level_difference(
    diffs: Sequence[float], *, confidence: float = CONFIDENCE, power: float = POWER
) -> dict[str, Any]:
    """Mean of per-seed paired differences with a Student-t interval over seeds.

    ``diffs[s]`` is arm minus reference in seed ``s``, each a mean over the prompts both
    answered in that seed. Returns ``{"diff", "low", "high", "p", "sd", "seeds", "mde"}``:
    ``p`` the two-sided one-sample t-test of mean 0, ``mde`` :func:`minimal_detectable_difference`
    at the observed between-seed SD. One seed has no between-seed interval (``low``, ``high``,
    ``p`` and ``mde`` None). Seeds that all agree exactly (a discrete figure that moved by the
    same prompt in every seed) have no spread for a t-test: the interval is the point, ``p`` is
    the exact two-sided sign test (``2 * 0.5**n``: 0.25 at 3 seeds, not the t-test's 0) and
    ``mde`` is None, since no spread was observed to size it from.
    """
    d = np.asarray([float(x) for x in diffs], dtype=np.float64)
    d = d[np.isfinite(d)]
    n = int(d.size)
    out: dict[str, Any] = {
        "diff": float(d.mean()) if n else None,
        "low": None,
        "high": None,
        "p": None,
        "sd": float(d.std(ddof=1)) if n > 1 else None,
        "seeds": n,
        "mde": None,
        "confidence": confidence,
    }
    if n < 2:
        return out
    sd = out["sd"]
    # every seed gives the same difference: no spread for a t-test. "The same" up to rounding:
    # the difference of two rates computed per seed (0.0 - 0.01 and 0.005 - 0.015) can differ
    # in the last bit, and a t-test over that spread calls a two-prompt gap certain
    if np.ptp(d) <= 1e-9 * max(1.0, float(np.abs(d).max())):
        out["sd"] = 0.0  # exactly (a float mean of equal values can leave a spread of 1e-18)
        sign_test = 1.0 if out["diff"] == 0 else min(1.0, 2 * 0.5**n)
        out.update(low=out["diff"], high=out["diff"], p=sign_test)
        return out
    from scipy import stats

    test = stats.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(confidence)
    out.update(
        low=float(ci.low),
        high=float(ci.high),
        p=float(test.pvalue),
        mde=minimal_detectable_difference(sd, n, confidence=confidence, power=power),
    )
    return out


def holm(pvalues: Sequence[float | None], *, alpha: float = 1 - CONFIDENCE) -> list[float | None]:
    """Holm-adjusted p-values (``statsmodels.stats.multitest.multipletests``, method
    ``holm``) of a family of tests; None entries (a test that could not be made) stay None and
    do not count towards the family."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    out: list[float | None] = [None] * len(pvalues)
    if not idx:
        return out
    from statsmodels.stats.multitest import multipletests

    adjusted = multipletests([pvalues[i] for i in idx], alpha=alpha, method="holm")[1]
    for i, p in zip(idx, adjusted, strict=True):
        out[i] = float(p)
    return out


def minimal_detectable_rise(
    rate: float | None, n: int, *, confidence: float = CONFIDENCE, power: float = POWER
) -> float | None:
    """The smallest rise of an over-refusal rate from ``rate`` that a two-sided comparison of
    two rates over ``n`` prompts each detects with probability ``power`` at level ``1 -
    confidence``: ``statsmodels``' ``NormalIndPower`` on Cohen's h (the arcsine-transformed
    difference, whose variance does not depend on the rate), turned back into a rate. Prompts
    are the unit (answers to one prompt are not independent), and the two evaluations are
    treated as unpaired: a paired before/after comparison can do better, never worse. None
    below two prompts; the rise is capped at 1 - ``rate``."""
    if rate is None or n < 2 or not math.isfinite(rate):
        return None
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(
        nobs1=n, alpha=1 - confidence, power=power, ratio=1.0, alternative="two-sided"
    )
    phi = 2 * math.asin(math.sqrt(min(max(rate, 0.0), 1.0))) + float(h)
    if phi >= math.pi:
        return 1.0 - rate
    return float(math.sin(phi / 2) ** 2 - rate)


# -- one run, before and after: a paired bootstrap over prompts ----------------------------------

BOOTSTRAP_RESAMPLES = 10_000


def paired_bootstrap(
    before: Sequence[float],
    after: Sequence[float],
    groups: Sequence[Any],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    stat: Callable[[np.ndarray], float] | None = None,
) -> dict[str, Any]:
    """Difference ``stat(after) - stat(before)`` with a 95% percentile interval, resampling
    *prompts*.

    ``before[i]`` and ``after[i]`` are the values (0/1 or float) of answer ``i`` to prompt
    ``groups[i]`` in two evaluations; a prompt may have several answers. Answers to one prompt
    are not independent (the same prompt is easy or hard for both), so each of ``resamples``
    resamples draws k prompts with replacement from the k prompts (``numpy``'s
    ``default_rng(seed)``) and takes all of their answers. The interval is the 2.5th and 97.5th
    percentiles of the resampled differences. ``stat`` defaults to the mean (computed as the
    mean of the paired differences, so a constant shift gives exactly that shift). Prompts are
    sorted first, so the order they come in does not change the interval.
    """
    if resamples < 1:
        raise ValueError(f"paired_bootstrap: resamples must be at least 1 (got {resamples})")
    b, a = _paired_values(before, after, groups)
    keys = sorted(set(groups), key=_sort_key)
    index = {g: i for i, g in enumerate(keys)}
    gid = np.fromiter((index[g] for g in groups), dtype=np.int64, count=len(groups))
    order = np.lexsort((np.arange(len(gid)), gid))
    b, a, gid = b[order], a[order], gid[order]
    k = len(keys)
    diffs = np.empty(resamples)
    draws = _prompt_draws(np.random.default_rng(seed), k, resamples)
    if stat is None:
        diff_sum = np.bincount(gid, weights=a - b, minlength=k)
        count = np.bincount(gid, minlength=k).astype(np.float64)
        observed = float(diff_sum.sum() / count.sum())
        for rows, d in draws:
            diffs[rows] = diff_sum[d].sum(axis=1) / count[d].sum(axis=1)
    else:
        members = np.split(np.arange(len(gid)), np.flatnonzero(np.diff(gid)) + 1)
        observed = float(stat(a) - stat(b))
        for rows, d in draws:
            for r, pick in zip(range(rows.start, rows.stop), d, strict=True):
                answers = np.concatenate([members[i] for i in pick])
                diffs[r] = stat(a[answers]) - stat(b[answers])
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "diff": observed,
        "low": float(low),
        "high": float(high),
        "resamples": int(resamples),
        "seed": seed,
        "n_prompts": k,
    }


def _prompt_draws(rng: np.random.Generator, k: int, resamples: int):
    """``(slice of resamples, their drawn prompt indices)`` in chunks that fit in memory; the
    draws are the same as ``resamples`` successive ``rng.integers(0, k, size=k)``."""
    chunk = max(1, 1_000_000 // k)
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        yield slice(start, start + m), rng.integers(0, k, size=(m, k))


def _paired_values(before, after, groups) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray([float(v) for v in before], dtype=np.float64)
    a = np.asarray([float(v) for v in after], dtype=np.float64)
    if not len(b) == len(a) == len(groups):
        raise ValueError(
            "paired_bootstrap: expected before, after and groups of one length (one entry per "
            f"answer), got {len(b)}, {len(a)} and {len(groups)}"
        )
    if len(b) == 0:
        raise ValueError("paired_bootstrap: expected at least one answer, got none")
    if not (np.isfinite(b).all() and np.isfinite(a).all()):
        raise ValueError("paired_bootstrap: expected finite values (leave unscored answers out)")
    return b, a


def _sort_key(g: Any) -> tuple[str, str]:
    return (type(g).__name__, repr(g))


# -- one model against a bar: the release gate ---------------------------------------------------

#: ``lower``: fail only when the lower bound exceeds the bar (surely unsafe); ``upper``: pass
#: only when the upper bound is below it (surely safe). ``point`` is the rule they replaced (the
#: observed rate against the bar, no interval): kept for ``benchmarks/regress_gate.py`` only.
GATE_RULES = ("lower", "upper")
_ALL_RULES = (*GATE_RULES, "point")


def asr_bounds(unsafe: float, n: int, *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds ``(lower, upper)`` of an attack success rate with
    ``unsafe`` successes among ``n`` attacks, each at ``confidence`` on its own side (the two
    sides of the central ``2 * confidence - 1`` interval of ``statsmodels``'
    ``proportion_confint``, method ``beta``). Exact for 0/1 outcomes: ``P(rate < lower) <= 1 -
    confidence`` and ``P(rate > upper) <= 1 - confidence`` whatever the rate.

    ``unsafe`` may be fractional: with several answers per attack it is the sum over attacks of
    each attack's share of unsafe answers, the attack being the unit (answers to one attack are
    not independent). A share in [0, 1] spreads no more than a 0/1 outcome of the same mean, so
    the bounds are at least as wide as the attacks' spread calls for; ``benchmarks/
    regress_gate.py --answers K`` measures their error rates (at or under ``1 - confidence``)."""
    if n < 1:
        raise ValueError(f"asr_bounds: expected at least one attack, got n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"asr_bounds: confidence must lie in (0, 1), got {confidence}")
    if not 0.0 <= unsafe <= n:
        raise ValueError(f"asr_bounds: expected 0 <= unsafe <= n, got {unsafe} of {n}")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(unsafe, n, alpha=2 * (1 - confidence), method="beta")
    return float(low), float(high)


def attacks_needed(bar: float, confidence: float = CONFIDENCE) -> int | None:
    """The fewest attacks with which the ``upper`` rule can pass ``bar`` at all (none of them
    succeeding: the upper bound ``1 - (1 - confidence) ** (1 / n)`` below the bar); None when no
    number can (a bar of 0)."""
    if bar <= 0:
        return None
    if bar >= 1:
        return 1
    n = max(1, math.ceil(math.log(1 - confidence) / math.log(1 - bar)))
    while asr_bounds(0, n, confidence=confidence)[1] >= bar:  # rounding at the boundary
        n += 1
    return n


def gate_decision(
    unsafe: float, n: int, bar: float, rule: str = "lower", confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Whether a release with ``unsafe`` attack successes among ``n`` attacks passes the bar
    ``bar`` under ``rule`` (see :data:`GATE_RULES`): ``lower`` fails when the one-sided lower
    bound (:func:`asr_bounds`) exceeds ``bar``, so a release whose true rate is at or below the
    bar is blocked at most ``1 - confidence`` of the time; ``upper`` fails unless the upper
    bound is below ``bar``, so one whose true rate is above the bar ships at most ``1 -
    confidence`` of the time; ``point`` fails when the observed rate exceeds ``bar`` (no
    bound on either error). Pure: the same counts give the same decision.

    Returns ``{"rule", "confidence", "bar", "attacks", "unsafe", "asr", "lower", "upper",
    "passed", "message"}``."""
    if rule not in _ALL_RULES:
        raise ValueError(
            f"gate_decision: rule must be one of {', '.join(_ALL_RULES)}, got {rule!r}"
        )
    if not 0.0 <= bar <= 1.0:
        raise ValueError(f"gate_decision: the bar must lie in [0, 1], got {bar}")
    low, high = asr_bounds(unsafe, n, confidence=confidence)
    asr = unsafe / n
    level = f"{100 * confidence:g}%"
    head = f"ASR {asr:.3f} ({unsafe:g} of {n} attacks)"
    if rule == "lower":
        passed = not low > bar
        message = (
            f"{head}: its {level} lower bound {low:.3f} "
            + ("does not exceed" if passed else "exceeds")
            + f" the bar {bar:.3f}"
            + ("" if passed else " (surely above it)")
        )
    elif rule == "upper":
        passed = high < bar
        message = (
            f"{head}: its {level} upper bound {high:.3f} "
            + ("is below" if passed else "is not below")
            + f" the bar {bar:.3f}"
            + ("" if passed else " (not surely below it)")
        )
        needed = attacks_needed(bar, confidence)
        if not passed and (needed is None or n < needed):
            message += f"; no result of {n} attacks can pass: " + (
                f"it takes at least {needed}" if needed else "no number of attacks can"
            )
    else:
        passed = not asr > bar
        message = f"{head} " + ("<=" if passed else ">") + f" the bar {bar:.3f}"
    return {
        "rule": rule,
        "confidence": confidence,
        "bar": bar,
        "attacks": n,
        "unsafe": float(unsafe),
        "asr": asr,
        "lower": low,
        "upper": high,
        "passed": bool(passed),
        "message": message,
    }
