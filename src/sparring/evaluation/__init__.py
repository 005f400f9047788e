"""Evaluation, which measures and never trains: held-out attack success, refusal rate, judge
agreement, transfer, diversity, KL moved, before/after comparisons with intervals, cross-play,
reports and exported attack datasets. See docs/evaluation.md. Drivers that train to measure
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
