"""How often the ``sparring regress --max-asr`` gate blocks a healthy release and ships an unsafe
one: simulated replays of an archive with a known true attack success rate (ASR).

Each simulated replay has ``n`` attacks (``--n``), each answered ``--answers`` times. With one
answer, each attack succeeds with probability the true ASR: the count of successes is a binomial
draw, and the exact rate (the binomial sum over counts) is printed beside the simulated one.
With ``--answers K`` each attack's own success rate is drawn from a Beta distribution of mean
the true ASR and concentration ``--concentration`` (small: attacks that mostly always or never
work; large: every attack alike), its K answers are Bernoulli draws, and the gate sees each
attack's share of unsafe answers, as ``sparring regress`` does.

Every decision is made by ``sparring.evaluation.stats.gate_decision``, the function ``sparring
regress`` calls, at ``--confidence``:

- ``point``: the rule the bound-based ones replaced: fail when the observed ASR exceeds the bar;
- ``lower`` (``--gate lower``, the default): fail when the one-sided lower bound exceeds the bar
  (fail only when surely unsafe; bounds the chance of blocking a release at or below the bar);
- ``upper`` (``--gate upper``): fail unless the one-sided upper bound is below the bar (pass
  only when surely safe; bounds the chance of shipping a release above the bar).

Printed, for each n and rule: how often it FAILS a release whose true ASR is half the bar and
equal to the bar (a healthy release blocked), and how often it PASSES one at twice the bar (an
unsafe release shipped), each a share of ``--draws`` simulated replays.

    python benchmarks/regress_gate.py               # a few seconds
    python benchmarks/regress_gate.py --bar 0.1 --n 50 200 --draws 50000
    python benchmarks/regress_gate.py --answers 3 --concentration 0.5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from sparring.evaluation.stats import _ALL_RULES, gate_decision

RULES = ("point", *(r for r in _ALL_RULES if r != "point"))


def draw(rng, true: float, n: int, answers: int, concentration: float, draws: int) -> np.ndarray:
    """The gate's input per simulated replay: the sum over attacks of the unsafe share."""
    if answers == 1:
        return rng.binomial(n, true, size=draws).astype(np.float64)
    rate = rng.beta(true * concentration, (1 - true) * concentration, size=(draws, n))
    return rng.binomial(answers, rate).sum(axis=1) / answers


def fail_rate(values: np.ndarray, n: int, bar: float, rule: str, confidence: float) -> float:
    """Share of ``values`` (sums of unsafe shares) that ``gate_decision`` fails."""
    fails = {v: not gate_decision(v, n, bar, rule, confidence)["passed"] for v in np.unique(values)}
    return float(np.mean([fails[v] for v in values]))


def exact_fail_rate(true: float, n: int, bar: float, rule: str, confidence: float) -> float:
    """The binomial probability that ``gate_decision`` fails (one answer per attack)."""
    pmf = stats.binom.pmf(np.arange(n + 1), n, true)
    fails = [not gate_decision(x, n, bar, rule, confidence)["passed"] for x in range(n + 1)]
    return float(np.dot(pmf, fails))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bar", type=float, default=0.05, help="--max-asr (default 0.05)")
    ap.add_argument("--n", type=int, nargs="+", default=[20, 100], help="attacks per replay")
    ap.add_argument("--draws", type=int, default=20_000, help="simulated replays per cell")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--answers", type=int, default=1, help="answers per attack (default 1)")
    ap.add_argument(
        "--concentration",
        type=float,
        default=1.0,
        help="with --answers above 1: the Beta concentration of the attacks' own rates",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    bar, c = args.bar, args.confidence
    truths = {"fails at bar/2": bar / 2, "fails at bar": bar, "passes at 2x bar": 2 * bar}
    how = "binomial draws" if args.answers == 1 else "draws"
    print(
        f"bar (--max-asr) {bar:g}, one-sided {100 * c:g}% bounds, {args.answers} answer(s) per "
        f"attack, {args.draws} {how} per cell"
        + ("" if args.answers == 1 else f", Beta concentration {args.concentration:g}")
    )
    print("figures: simulated share" + (" (exact binomial)" if args.answers == 1 else ""))
    print()
    header = f"{'n':>5} | {'rule':<6} | " + " | ".join(f"{k:>24}" for k in truths)
    print(header)
    print("-" * len(header))
    for n in args.n:
        samples = {
            k: draw(rng, t, n, args.answers, args.concentration, args.draws)
            for k, t in truths.items()
        }
        for rule in RULES:
            cells = []
            for k, t in truths.items():
                rate = fail_rate(samples[k], n, bar, rule, c)
                exact = exact_fail_rate(t, n, bar, rule, c) if args.answers == 1 else None
                if k.startswith("passes"):
                    rate = 1 - rate
                    exact = None if exact is None else 1 - exact
                cell = f"{100 * rate:5.1f}%" + ("" if exact is None else f" ({100 * exact:5.1f}%)")
                cells.append(f"{cell:>24}")
            print(f"{n:>5} | {rule:<6} | " + " | ".join(cells))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
