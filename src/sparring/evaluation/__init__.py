"""Evaluation, which measures and never trains: held-out attack success, refusal rate, judge
agreement, transfer, diversity, KL moved, before/after comparisons with intervals, cross-play,
reports, exported attack datasets, the archive of attacks that worked and ``sparring regress``,
which replays it against a release. See docs/evaluation.md. Drivers that train to measure
(exploitability, the paper's experiment) are in :mod:`sparring.experiments`.

Modules load models lazily; importing this package is cheap.
"""

from sparring.evaluation.metrics import (
    attack_success_rate,
    distinct_n,
    diversity,
    mean_p_safe,
    mean_std,
    over_refusal_rate,
    sequence_kl,
)

__all__ = [
    "attack_success_rate",
    "distinct_n",
    "diversity",
    "mean_p_safe",
    "mean_std",
    "over_refusal_rate",
    "sequence_kl",
]
