"""How many seeds an experiment needs: from a pilot's between-seed spread to a seed count.

Reads an experiment folder's ``results.json`` (``sparring experiment ...``), takes each arm's
between-seed SD of its paired difference from the reference on the primary figure (or
``--set``/``--figure``), and prints, for a target effect (by default a third of the reference's
value, the pools experiment's goal), the smallest detectable difference at the pilot's seeds and
the fewest seeds whose detectable difference is at most the target: the same two-sided
one-sample t-test at 80% power the experiment's Table 4 uses
(:func:`sparring.evaluation.stats.minimal_detectable_difference`).

    python benchmarks/seeds_needed.py runs/pilot-pools
    python benchmarks/seeds_needed.py runs/pilot-pools --effect 0.10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", help="the experiment's folder (holds results.json)")
    ap.add_argument("--set", help="prompt set (default: the experiment's primary)")
    ap.add_argument("--figure", help="figure (default: the experiment's primary)")
    ap.add_argument(
        "--effect", type=float, help="target difference (default: a third of the reference)"
    )
    ap.add_argument("--max-seeds", type=int, default=200)
    args = ap.parse_args()

    from sparring.evaluation.stats import minimal_detectable_difference

    data = json.loads((Path(args.experiment) / "results.json").read_text(encoding="utf-8"))
    versus = data["table"]["versus"]
    key_set = args.set or versus["primary"]["set"]
    figure = args.figure or versus["primary"]["figure"]
    print(f"{args.experiment}: {key_set} / {figure}, each arm minus {versus['reference']}")
    print(
        f"{'arm':<16} {'reference':>9} {'diff':>7} {'SD':>6} {'seeds':>5} {'MDE':>6} "
        f"{'target':>7} {'seeds for target':>16}"
    )
    for arm, sets in versus["arms"].items():
        e = sets[key_set][figure]
        ref, sd, n = e["start"], e["sd"], e["seeds"]
        target = args.effect if args.effect is not None else ref / 3
        mde = minimal_detectable_difference(sd, n)
        need = next(
            (
                k
                for k in range(2, args.max_seeds + 1)
                if minimal_detectable_difference(sd, k) <= target
            ),
            None,
        )
        print(
            f"{arm:<16} {100 * ref:>8.1f}% {100 * e['diff']:>+6.1f} {100 * sd:>6.1f} {n:>5} "
            f"{100 * mde:>6.1f} {100 * target:>7.1f} "
            f"{need if need is not None else f'> {args.max_seeds}':>16}"
        )


if __name__ == "__main__":
    main()
