"""Evaluation: held-out attack success, transfer, diversity, KL moved, cross-play, exploitability,
reports, exported attack datasets and the paper's experiment. See docs/evaluation.md.

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
