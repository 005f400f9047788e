"""How often the arm-comparison procedure calls a difference that is not there, and how often it
finds one that is: simulated experiments with a known truth.

Each simulated experiment has a reference arm and ``--arms`` other arms, each trained on
``--seeds`` seeds and evaluated on the same ``--prompts`` prompts (one answer each). A prompt's
difficulty (a logit drawn once per experiment, shared by every arm and seed: the prompts are
common) and each (arm, seed) run's own shift (normal, SD ``sigma`` points: the between-seed
variance) set the chance that an answer is unsafe; answers are Bernoulli draws. The truth is
a known difference ``delta`` between every other arm and the reference (0 under the null).

Procedures, run on the same experiments:

- ``seed-level t``: Sparring's (``sparring.evaluation.stats.seed_level_difference``): one paired
  difference per seed, Student's t-interval over seeds;
- ``pooled prompts``: the procedure it replaced: (seed, prompt) rows pooled over seeds and a
  paired bootstrap over them (``sparring.evaluation.metrics.paired_bootstrap``), blind to the
  seeds.

Printed: the false-positive rate (interval excludes 0 under the null) for each procedure and
between-seed SD, the power at each effect size, the mean smallest detectable difference Sparring
prints (``mde``), and the family-wise error over ``--arms`` arms with and without Holm's
correction. Every figure is a share of ``--experiments`` simulated experiments; its binomial
standard error is printed beside it.

    python benchmarks/stats.py                      # about a minute on 2 cores
    python benchmarks/stats.py --experiments 4000 --seeds 5
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from sparring.evaluation.metrics import paired_bootstrap
from sparring.evaluation.stats import holm, seed_level_difference


def simulate(rng, *, seeds, prompts, arms, sigma, delta, base=0.0, spread=1.5):
    """Per-prompt unsafe outcomes [arms + 1, seeds, prompts] (arm 0 the reference)."""
    difficulty = rng.normal(base, spread, size=prompts)  # common prompts
    p = 1.0 / (1.0 + np.exp(-difficulty))  # [prompts]
    shift = rng.normal(0.0, sigma, size=(arms + 1, seeds, 1))  # each run's own level
    shift[1:] += delta
    prob = np.clip(p[None, None, :] + shift, 0.0, 1.0)
    return (rng.random(prob.shape) < prob).astype(np.float64)


def seed_level(outcomes, arm=1):
    """Sparring's procedure for arm ``arm`` against the reference: (excludes 0, p, mde)."""
    diffs = outcomes[arm].mean(-1) - outcomes[0].mean(-1)  # one paired difference per seed
    r = seed_level_difference(diffs)
    return (r["low"] > 0 or r["high"] < 0), r["p"], r["mde"]


def pooled_prompts(outcomes, resamples, arm=1):
    """The replaced procedure: every (seed, prompt) pair a unit, seeds never resampled."""
    seeds, prompts = outcomes.shape[1:]
    groups = [(s, i) for s in range(seeds) for i in range(prompts)]
    r = paired_bootstrap(
        outcomes[0].ravel(), outcomes[arm].ravel(), groups, resamples=resamples, seed=0
    )
    return r["low"] > 0 or r["high"] < 0


def share(hits: list[bool]) -> str:
    n = len(hits)
    p = float(np.mean(hits))
    return f"{100 * p:5.1f}% (±{100 * math.sqrt(p * (1 - p) / n):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=2000, help="per cell (null and power)")
    ap.add_argument("--bootstrap-experiments", type=int, default=300)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--arms", type=int, default=4, help="arms compared with the reference")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 5.0, 10.0])
    ap.add_argument("--effects", type=float, nargs="+", default=[5.0, 10.0, 20.0, 30.0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    kw = {"seeds": args.seeds, "prompts": args.prompts, "arms": args.arms}
    print(
        f"{args.seeds} seeds x {args.prompts} prompts per arm, {args.arms} arms against the "
        f"reference; nominal 95% intervals\n"
    )
    print("False-positive rate (no true difference; interval excludes 0):")
    print(f"{'between-seed SD':>16} | {'seed-level t':>16} | {'pooled prompts':>16}")
    for sigma in args.sigmas:
        new = [
            seed_level(simulate(rng, sigma=sigma / 100, delta=0.0, **kw))[0]
            for _ in range(args.experiments)
        ]
        old = [
            pooled_prompts(simulate(rng, sigma=sigma / 100, delta=0.0, **kw), args.resamples)
            for _ in range(args.bootstrap_experiments)
        ]
        print(f"{sigma:>13.0f} pt | {share(new):>16} | {share(old):>16}")

    sigma = args.sigmas[-1]
    print(f"\nPower of the seed-level t (between-seed SD {sigma:.0f} points):")
    print(f"{'true difference':>16} | {'power':>16} | {'mean MDE printed':>16}")
    for effect in args.effects:
        got = [
            seed_level(simulate(rng, sigma=sigma / 100, delta=effect / 100, **kw))
            for _ in range(args.experiments)
        ]
        mde = np.mean([g[2] for g in got if g[2] is not None])
        print(f"{effect:>13.0f} pt | {share([g[0] for g in got]):>16} | {100 * mde:>13.1f} pt")

    print(f"\nFamily-wise error over {args.arms} arms (null; between-seed SD {sigma:.0f} points):")
    raw, adjusted = [], []
    for _ in range(args.experiments):
        out = simulate(rng, sigma=sigma / 100, delta=0.0, **kw)
        ps = [seed_level(out, arm)[1] for arm in range(1, args.arms + 1)]
        raw.append(any(p is not None and p < 0.05 for p in ps))
        adjusted.append(any(p is not None and p < 0.05 for p in holm(ps)))
    print(f"  any arm called different, unadjusted: {share(raw)}")
    print(f"  any arm called different, Holm:       {share(adjusted)}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
