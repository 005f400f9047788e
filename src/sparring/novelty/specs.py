"""Configuration schema of the attacker's novelty (diversity) rewards: the ``novelty:`` block.

The attacker's scalar reward is ``P(unsafe) - bleu_weight * SelfBLEU(x, X) - embed_weight *
cos(x, X)`` where ``X`` is the history of earlier attacks. :class:`NoveltySpec` says how both
terms are computed and what the history is; :func:`sparring.novelty.build_novelty` turns it into
a :class:`sparring.novelty.NoveltyScorer`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sparring.embedders import EmbedderSpec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistorySpec(_Spec):
    """Which earlier attacks form the history ``X``.

    ``unbounded`` keeps every attack (the paper); ``window`` keeps the last ``size``;
    ``reservoir`` keeps a uniform random sample of ``size`` of all attacks seen so far
    (Algorithm R, with its own RNG seeded by ``seed``).
    """

    policy: Literal["unbounded", "window", "reservoir"] = "unbounded"
    size: int | None = Field(default=None, description="required (> 0) for window and reservoir")
    seed: int = 0

    @model_validator(mode="after")
    def _check_size(self) -> HistorySpec:
        if self.policy == "unbounded":
            if self.size is not None:
                raise ValueError("history.size is only used by the window and reservoir policies")
        elif self.size is None or self.size <= 0:
            raise ValueError(f"history.size must be a positive integer for policy {self.policy!r}")
        return self


class NoveltySpec(_Spec):
    """The attacker's novelty penalty ``bleu_weight * SelfBLEU + embed_weight * cosine``.

    ``selfbleu``: ``per_reference`` is the method's definition (sentence BLEU-n of the attack
    against each history prompt as a single reference, averaged over the history, then over the
    orders); ``multi_reference`` uses all history prompts as references of one sentence BLEU per
    order (curiosity-driven red teaming). ``orders``: the BLEU-n orders averaged (BLEU-n uses
    uniform weights 1/n over n-gram orders 1..n, NLTK smoothing method1).
    ``embedding``: ``mean_cosine`` is the mean cosine to every history embedding (the method);
    ``knn`` is the mean cosine to the ``knn_k`` most similar history embeddings among the newest
    ``knn_max_items`` (``knn_k: 1`` is the max similarity).
    ``selfbleu_sample``: per_reference only; when set, SelfBLEU is estimated against a uniform
    reservoir sample of at most this many history items (bounded cost, standard error at most
    ``0.5 / sqrt(selfbleu_sample)``); ``None`` is exact.
    """

    bleu_weight: float = Field(default=0.0, ge=0.0)
    embed_weight: float = Field(default=0.0, ge=0.0)
    selfbleu: Literal["per_reference", "multi_reference"] = "per_reference"
    orders: list[int] = Field(default_factory=lambda: [2, 3, 4, 5])
    tokenizer: Literal["nltk", "whitespace"] = "nltk"
    lowercase: bool = False
    selfbleu_sample: int | None = Field(default=None, gt=0)
    selfbleu_sample_seed: int = 0
    embedding: Literal["mean_cosine", "knn"] = "mean_cosine"
    knn_k: int = Field(default=10, ge=1)
    knn_max_items: int = Field(default=100_000, ge=1)
    embedder: EmbedderSpec = Field(default_factory=EmbedderSpec)
    history: HistorySpec = Field(default_factory=HistorySpec)

    @field_validator("bleu_weight", "embed_weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("weights must be finite")
        return value

    @field_validator("orders")
    @classmethod
    def _check_orders(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("orders must name at least one BLEU order")
        bad = [n for n in value if not 1 <= n <= 8]
        if bad:
            raise ValueError(f"BLEU orders must be in 1..8, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"BLEU orders must not repeat, got {value}")
        return sorted(value)

    @model_validator(mode="after")
    def _check_sample(self) -> NoveltySpec:
        if self.selfbleu_sample is not None and self.selfbleu != "per_reference":
            raise ValueError("selfbleu_sample applies to selfbleu: per_reference only")
        return self
