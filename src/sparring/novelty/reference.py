"""Plain reference computations of the novelty terms: straightforward pairwise loops.

They define what the fast incremental indexes must return (the tests compare the two, and the
benchmark times both). BLEU here is a direct transcription of NLTK's ``sentence_bleu`` with
uniform weights and ``SmoothingFunction().method1``: clipped n-gram precisions over orders 1..n,
a zero match count replaced by 0.1 (divided by the candidate's n-gram count, at least 1), a score
of 0 when no unigram matches, and the brevity penalty against the reference length closest to
the candidate's (ties to the shorter). Inputs are token lists, except where texts are named.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from sparring.novelty.selfbleu import bleu_from_counts


def _ngrams(tokens: Sequence[str], k: int) -> Counter:
    return Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1))


def sentence_bleu(references: Sequence[Sequence[str]], hypothesis: Sequence[str], n: int) -> float:
    """NLTK-equivalent sentence BLEU-n (weights 1/n, smoothing method1) of ``hypothesis``."""
    if not references:
        raise ValueError("sentence_bleu needs at least one reference")
    matches = []
    for k in range(1, n + 1):
        counts = _ngrams(hypothesis, k)
        max_counts: Counter = Counter()
        for ref in references:
            ref_counts = _ngrams(ref, k)
            for g in counts:
                max_counts[g] = max(max_counts[g], ref_counts[g])
        matches.append(sum(min(c, max_counts[g]) for g, c in counts.items()))
    hyp_len = len(hypothesis)
    ref_len = min((len(r) for r in references), key=lambda r: (abs(r - hyp_len), r))
    return bleu_from_counts(matches, hyp_len, ref_len, n)


def selfbleu_per_reference(
    attack: Sequence[str], history: Sequence[Sequence[str]], orders: Sequence[int] = (2, 3, 4, 5)
) -> float:
    """Mean over orders of the mean over history items of BLEU-n(attack, [item]); 0 if empty."""
    if not history:
        return 0.0
    per_order = [
        math.fsum(sentence_bleu([h], attack, n) for h in history) / len(history) for n in orders
    ]
    return math.fsum(per_order) / len(orders)


def selfbleu_multi_reference(
    attack: Sequence[str], history: Sequence[Sequence[str]], orders: Sequence[int] = (2, 3, 4, 5)
) -> float:
    """Mean over orders of BLEU-n(attack, history as references); 0 if empty."""
    if not history:
        return 0.0
    return math.fsum(sentence_bleu(history, attack, n) for n in orders) / len(orders)


def mean_cosine(vector: np.ndarray, history: np.ndarray) -> float:
    """Mean cosine of a unit vector to the rows of ``history`` (unit rows); 0 if empty."""
    if len(history) == 0:
        return 0.0
    return float(np.mean(history.astype(np.float64) @ vector.astype(np.float64)))


def knn_cosine(vector: np.ndarray, history: np.ndarray, k: int) -> float:
    """Mean of the k largest cosines of ``vector`` to the rows of ``history``; 0 if empty."""
    if len(history) == 0:
        return 0.0
    sims = np.sort(history.astype(np.float64) @ vector.astype(np.float64))[::-1]
    return float(np.mean(sims[:k]))


def distinct_n(tokenized: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of a corpus (0 when it has none)."""
    seen: set = set()
    total = 0
    for toks in tokenized:
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def diversity(
    tokenized: Sequence[Sequence[str]],
    embeddings: np.ndarray | None = None,
    orders: Sequence[int] = (2, 3, 4, 5),
    distinct_orders: Sequence[int] = (1, 2, 3),
) -> dict[str, float]:
    """Corpus diversity by pairwise loops: each text against all the others, never itself.

    Keys: ``selfbleu`` (mean per-reference SelfBLEU of each text against the others),
    ``bleu_diversity`` (1 - selfbleu), ``distinct_<n>``, and with embeddings ``cosine`` (mean
    pairwise cosine over distinct pairs) and ``embedding_diversity`` (1 - cosine). With fewer
    than two texts selfbleu and cosine are 0.
    """
    n = len(tokenized)
    sb = [
        selfbleu_per_reference(tokenized[i], [tokenized[j] for j in range(n) if j != i], orders)
        for i in range(n)
    ]
    out: dict[str, float] = {"n": float(n)}
    out["selfbleu"] = math.fsum(sb) / n if n >= 2 else 0.0
    out["bleu_diversity"] = 1.0 - out["selfbleu"]
    for d in distinct_orders:
        out[f"distinct_{d}"] = distinct_n(tokenized, d)
    if embeddings is not None:
        e = embeddings.astype(np.float64)
        if n >= 2:
            sims = e @ e.T
            cos = (sims.sum() - np.trace(sims)) / (n * (n - 1))
        else:
            cos = 0.0
        out["cosine"] = float(cos)
        out["embedding_diversity"] = 1.0 - float(cos)
    return out
