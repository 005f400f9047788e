"""The attacker's novelty (diversity) rewards: SelfBLEU and embedding similarity to the history.

The attacker's reward is ``P(unsafe) - bleu_weight * SelfBLEU(x, X) - embed_weight * cos(x, X)``
with X the earlier attacks. Usage::

    scorer = build_novelty(spec)          # spec: NoveltySpec (the run config's novelty: block)
    scores = scorer.score(attacks)        # against the history before this batch
    reward = p_unsafe - scorer.penalty(scores)
    scorer.add(attacks)                   # then the batch joins the history

Indexes keep the per-attack cost flat (multi_reference SelfBLEU, mean cosine) or vectorised and
small (per_reference SelfBLEU; see :class:`PerReferenceSelfBLEU` for the exact bound).
:mod:`sparring.novelty.reference` has the plain pairwise computations they are tested against;
:func:`diversity` gives corpus-level diversity metrics of a finished set of attacks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sparring.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    build_embedder,
    check_texts,
    resolve_model_path,
)
from sparring.errors import ConfigError
from sparring.novelty._text import WordTokenizer, token_hashes
from sparring.novelty.scorer import NoveltyScorer
from sparring.novelty.selfbleu import MultiReferenceSelfBLEU, PerReferenceSelfBLEU, bleu_from_counts
from sparring.novelty.specs import EmbedderSpec, HistorySpec, NoveltySpec

__all__ = [
    "Embedder",
    "EmbedderSpec",
    "HashingEmbedder",
    "HistorySpec",
    "MultiReferenceSelfBLEU",
    "NoveltyScorer",
    "NoveltySpec",
    "PerReferenceSelfBLEU",
    "SentenceTransformerEmbedder",
    "build_embedder",
    "build_novelty",
    "diversity",
    "resolve_model_path",
]


def build_novelty(
    spec: NoveltySpec, *, embedder: Embedder | None = None, compute_all: bool = False
) -> NoveltyScorer:
    """The scorer described by ``spec``; ``embedder`` overrides ``spec.embedder``.

    ``compute_all`` computes (and indexes) both terms even when a weight is 0, e.g. to log them.
    """
    if not isinstance(spec, NoveltySpec):
        raise ConfigError(f"build_novelty needs a NoveltySpec, got {type(spec).__name__}")
    return NoveltyScorer(spec, embedder=embedder, compute_all=compute_all)


def diversity(
    texts: Sequence[str],
    embedder: Embedder | None = None,
    *,
    orders: Sequence[int] = (2, 3, 4, 5),
    distinct_orders: Sequence[int] = (1, 2, 3),
    tokenizer: str = "nltk",
    lowercase: bool = False,
) -> dict[str, float]:
    """Corpus diversity of a finished set of attacks; each text is compared with all the OTHER
    texts (other positions; a duplicate text counts as another), never with itself.

    Returns ``n``; ``selfbleu`` (mean over texts of the per-reference SelfBLEU of the text
    against the others, as the method defines it) and ``bleu_diversity = 1 - selfbleu``;
    ``distinct_<k>`` (distinct k-grams / all k-grams, word tokens) for each of
    ``distinct_orders``; and, when an ``embedder`` is given, ``cosine`` (mean cosine over
    distinct pairs) and ``embedding_diversity = 1 - cosine``. With fewer than two texts,
    selfbleu and cosine are 0. Equal to :func:`sparring.novelty.reference.diversity` but
    computed with the SelfBLEU index (vectorised, not pairwise loops) and the embedding sum.
    """
    items = check_texts(texts, "texts")
    if tokenizer not in ("nltk", "whitespace"):
        raise ConfigError(f"diversity: tokenizer must be 'nltk' or 'whitespace', not {tokenizer!r}")
    if not orders or any(not 1 <= o <= 8 for o in orders):
        raise ConfigError(f"diversity: BLEU orders must be in 1..8, got {list(orders)}")
    n = len(items)
    tok = WordTokenizer(tokenizer, lowercase)  # type: ignore[arg-type]
    tokens = [tok(t) for t in items]
    hashes = [token_hashes(t) for t in tokens]
    out: dict[str, float] = {"n": float(n)}
    orders = sorted(set(orders))
    if n >= 2:
        index = PerReferenceSelfBLEU(orders)
        index.add(list(range(n)), hashes)
        with_self = index.score(hashes) * n
        per_text = []
        for i, toks in enumerate(tokens):
            length = len(toks)
            own = [max(length - k + 1, 0) for k in range(1, max(orders) + 1)]
            self_bleu = math.fsum(bleu_from_counts(own, length, length, o) for o in orders)
            per_text.append((with_self[i] - self_bleu / len(orders)) / (n - 1))
        out["selfbleu"] = math.fsum(per_text) / n
    else:
        out["selfbleu"] = 0.0
    out["bleu_diversity"] = 1.0 - out["selfbleu"]
    for k in distinct_orders:
        grams: set = set()
        total = 0
        for toks in tokens:
            g = [tuple(toks[i : i + k]) for i in range(len(toks) - k + 1)]
            total += len(g)
            grams.update(g)
        out[f"distinct_{k}"] = len(grams) / total if total else 0.0
    if embedder is not None:
        if n >= 2:
            v = np.asarray(embedder.embed(items), np.float64)
            s = v.sum(axis=0)
            cos = (float(s @ s) - float(np.einsum("ij,ij->", v, v))) / (n * (n - 1))
        else:
            cos = 0.0
        out["cosine"] = cos
        out["embedding_diversity"] = 1.0 - cos
    return out
