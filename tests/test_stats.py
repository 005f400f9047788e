"""Seed-level statistics against reference values computed by hand and by scipy's noncentral t."""

import math

import numpy as np
import pytest
from scipy import stats

from sparring.evaluation.stats import holm, minimal_detectable_difference, seed_level_difference


def test_seed_level_difference_is_students_t_over_seeds():
    r = seed_level_difference([0.1, 0.3, 0.2])
    # mean 0.2, SD 0.1, SE 0.1/sqrt(3), t(0.975, df=2) = 4.302653
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert r["diff"] == pytest.approx(0.2)
    assert (r["low"], r["high"]) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-6)
    assert r["sd"] == pytest.approx(0.1) and r["seeds"] == 3
    # t = 0.2 / (0.1 / sqrt 3) = 3.4641, two-sided p with 2 degrees of freedom
    assert r["p"] == pytest.approx(2 * stats.t.sf(0.2 / (0.1 / math.sqrt(3)), 2))
    assert r["p"] == pytest.approx(0.07418, abs=1e-4)


def test_one_seed_has_no_interval_and_agreeing_seeds_a_zero_width_one():
    one = seed_level_difference([0.4])
    assert one["diff"] == 0.4 and one["low"] is None and one["p"] is None and one["mde"] is None
    same = seed_level_difference([0.25, 0.25])
    # no spread: the point, and the exact sign test (two seeds of one sign: p = 2 * 0.5**2),
    # never a t-test's p of 0; nothing to size a detectable difference from
    assert (same["low"], same["high"], same["p"], same["mde"]) == (0.25, 0.25, 0.5, None)
    assert seed_level_difference([-0.005] * 3)["p"] == 0.25
    # equal up to the last bit (per-seed rate differences): still no spread, not p = 0
    rounded = seed_level_difference([0.0 - 0.01, 0.005 - 0.015, 0.0 - 0.01])
    assert (rounded["p"], rounded["mde"], rounded["low"]) == (0.25, None, rounded["high"])
    assert seed_level_difference([0.01] * 10)["p"] == pytest.approx(2 / 1024)
    assert seed_level_difference([0.0, 0.0])["p"] == 1.0
    assert seed_level_difference([0.1, float("nan"), 0.3])["seeds"] == 2  # unscored seed left out


def test_interval_covers_seeds_that_disagree():
    """Seeds that move in opposite directions: a wide interval through 0, whatever the prompts
    say (pooling the prompts over seeds would call +25 points certain)."""
    r = seed_level_difference([0.0, 0.5])
    # SD 0.3536, SE 0.25, t(0.975, df=1) = 12.7062
    assert (r["low"], r["high"]) == pytest.approx(
        (0.25 - 12.7062 * 0.25, 0.25 + 12.7062 * 0.25), abs=1e-3
    )
    assert r["low"] < 0 < r["high"]


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_minimal_detectable_difference_has_the_asked_power(n):
    """At the printed MDE a two-sided t-test over n seeds rejects with probability 0.8: the
    power from the noncentral t distribution (scipy), independent of statsmodels' solver."""
    sd = 0.1
    mde = minimal_detectable_difference(sd, n)
    crit = stats.t.ppf(0.975, n - 1)
    nc = mde / (sd / math.sqrt(n))
    power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-3)
    assert minimal_detectable_difference(sd, 1) is None


def test_holm_reference_values():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, None, 0.01]) == pytest.approx([0.2, None, 0.02])
    assert holm([None]) == [None]


def test_seed_level_false_positive_rate_is_nominal():
    """400 null experiments with between-seed SD 10 points: the seed-level interval excludes 0
    in about 5% of them (binomial 99.9% range for 400 draws at 5%: 1.0% to 9.8%), where pooling
    prompts over seeds would exceed 30% (benchmarks/stats.py prints both)."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        base = rng.uniform(0.2, 0.8, size=128)
        runs = np.clip(base + rng.normal(0, 0.1, size=(2, 3, 1)), 0, 1)
        outcomes = (rng.random(runs.shape) < runs).astype(float)
        r = seed_level_difference(outcomes[1].mean(-1) - outcomes[0].mean(-1))
        hits += r["low"] > 0 or r["high"] < 0
    assert 0.01 <= hits / 400 <= 0.098


@pytest.mark.parametrize(("rate", "n"), [(0.05, 216), (0.025, 10), (0.3, 50)])
def test_minimal_detectable_rise_has_the_asked_power(rate, n):
    """At the printed rise, the normal test of two rates on the arcsine scale (Cohen's h, n
    prompts each) has power 0.8: computed here from scipy's normal distribution."""
    from sparring.evaluation.stats import minimal_detectable_rise

    rise = minimal_detectable_rise(rate, n)
    h = 2 * math.asin(math.sqrt(rate + rise)) - 2 * math.asin(math.sqrt(rate))
    z = stats.norm.ppf(0.975)
    power = stats.norm.cdf(h * math.sqrt(n / 2) - z) + stats.norm.cdf(-h * math.sqrt(n / 2) - z)
    assert power == pytest.approx(0.8, abs=1e-3)
    assert minimal_detectable_rise(rate, 1) is None


def test_more_benign_prompts_see_smaller_rises():
    from sparring.evaluation.stats import minimal_detectable_rise

    ten, two_hundred = minimal_detectable_rise(0.025, 10), minimal_detectable_rise(0.025, 216)
    assert ten > 0.25 and two_hundred < 0.08
