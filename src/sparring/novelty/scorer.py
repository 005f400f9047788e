"""The novelty scorer the game engine calls: ``score`` a batch against the history, then ``add``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparring.embedders import Embedder, build_embedder, check_texts
from sparring.errors import CheckpointError, ConfigError, DataError
from sparring.novelty._text import WordTokenizer, token_hashes
from sparring.novelty.embedding import EmbeddingIndex
from sparring.novelty.history import History, SampleReservoir
from sparring.novelty.selfbleu import MultiReferenceSelfBLEU, PerReferenceSelfBLEU
from sparring.novelty.specs import NoveltySpec

STATE_FILE = "novelty.json"
TEXTS_FILE = "novelty_texts.json"
FORMAT = 1
# spec fields that shape the saved state (weights may change between runs, these may not)
_STATE_FIELDS = (
    "selfbleu",
    "orders",
    "tokenizer",
    "lowercase",
    "selfbleu_sample",
    "selfbleu_sample_seed",
    "embedding",
    "history",
)


class NoveltyScorer:
    """SelfBLEU and embedding novelty of attacks against the history of earlier attacks.

    ``score(attacks)`` returns ``{"selfbleu": ..., "cosine": ...}`` (float64 arrays, one value
    per attack) against the history *before* the batch; ``add(attacks)`` then appends the batch
    (subject to the history policy). A term whose weight is 0 is neither indexed nor computed
    (zeros) unless ``compute_all`` is set; in particular the embedder is not loaded then.

    ``add`` is deterministic given the sequence of its inputs (ids, history policy draws and
    index updates depend on nothing else), so ranks that all ``add`` the gathered union of a
    step's attacks in the same order hold the same history. ``score`` then ``add`` of the same
    list reuses its tokens and embeddings.

    ``save(directory)`` writes ``novelty.json`` (spec, history and sampler state with their RNG
    states, ids), ``novelty_texts.json`` (the live history texts) and ``novelty_*.npy`` arrays
    (token hashes and slot layout of the per-reference index, the embedding running sum and,
    when kept, the vectors); no pickle. ``load(directory)`` restores them so that later scores
    are bit for bit those of the uninterrupted run. Fields that shape the state (see
    ``_STATE_FIELDS``, and the embedder) must match; the weights may change. A term that was
    off when saved is rebuilt from the saved texts.
    """

    def __init__(
        self, spec: NoveltySpec, *, embedder: Embedder | None = None, compute_all: bool = False
    ):
        self.spec = spec
        self.use_bleu = compute_all or spec.bleu_weight > 0
        self.use_embed = compute_all or spec.embed_weight > 0
        self._embedder = embedder
        self.tokenizer = WordTokenizer(spec.tokenizer, spec.lowercase)
        self._reset()

    def _reset(self) -> None:
        """Empty history and fresh indexes for the enabled terms."""
        spec = self.spec
        self.history = History(spec.history)
        self.texts: dict[int, str] = {}
        self._hashes: dict[int, np.ndarray] = {}  # live token hashes (multi_reference + removal)
        self.bleu: PerReferenceSelfBLEU | MultiReferenceSelfBLEU | None = None
        self.sample: SampleReservoir | None = None
        if self.use_bleu:
            if spec.selfbleu == "per_reference":
                self.bleu = PerReferenceSelfBLEU(spec.orders)
                if spec.selfbleu_sample is not None:
                    self.sample = SampleReservoir(spec.selfbleu_sample, spec.selfbleu_sample_seed)
            else:
                self.bleu = MultiReferenceSelfBLEU(spec.orders)
        self.emb: EmbeddingIndex | None = None
        if self.use_embed:
            self.emb = EmbeddingIndex(
                spec.embedding, spec.knn_k, spec.knn_max_items, keep_vectors=self.history.removes
            )
        self._cache: tuple[list[str], list[np.ndarray] | None, np.ndarray | None] | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self.spec.embedder)
        return self._embedder

    def __len__(self) -> int:
        return len(self.texts)

    def _hash(self, texts: list[str]) -> list[np.ndarray]:
        return [token_hashes(self.tokenizer(t)) for t in texts]

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise DataError(
                f"the embedder returned shape {vectors.shape} for {len(texts)} texts; "
                "expected (n, dim)"
            )
        if not np.isfinite(vectors).all():
            raise DataError("the embedder returned non-finite values")
        # cosines need unit vectors: an embedder that returns raw vectors would otherwise give
        # dot products, whose size depends on the text's length and wording, not its meaning
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if vectors.size and (norms == 0).any():
            raise DataError("the embedder returned an all-zero vector; it has no direction")
        return (vectors / norms).astype(np.float32) if vectors.size else vectors

    def _features(self, texts: list[str], need_hashes: bool, need_vectors: bool):
        cached = self._cache
        hashes = vectors = None
        if cached is not None and cached[0] == texts:
            hashes, vectors = cached[1], cached[2]
        if need_hashes and hashes is None:
            hashes = self._hash(texts)
        if need_vectors and vectors is None:
            vectors = self._embed(texts) if texts else np.zeros((0, 0), np.float32)
        self._cache = (list(texts), hashes, vectors)
        return hashes, vectors

    # ------------------------------------------------------------------ the API
    def score(self, attacks: Sequence[str]) -> dict[str, np.ndarray]:
        texts = check_texts(attacks)
        n = len(texts)
        out = {"selfbleu": np.zeros(n, np.float64), "cosine": np.zeros(n, np.float64)}
        if n == 0 or not self.texts:
            return out
        bleu_on = self.bleu is not None and len(self.bleu) > 0
        emb_on = self.emb is not None and len(self.emb) > 0
        hashes, vectors = self._features(texts, bleu_on, emb_on)
        if bleu_on:
            out["selfbleu"] = self.bleu.score(hashes)
        if emb_on:
            out["cosine"] = self.emb.score(vectors)
        return out

    def add(self, attacks: Sequence[str]) -> None:
        texts = check_texts(attacks)
        if not texts:
            return
        adm = self.history.admit(len(texts))
        entering_texts = [texts[p] for p in adm.positions]
        hashes, vectors = self._features(texts, self.bleu is not None, self.emb is not None)
        for i in adm.leaving:
            del self.texts[i]
        for i, t in zip(adm.entering, entering_texts, strict=True):
            self.texts[i] = t
        if self.bleu is not None:
            ent_hashes = [hashes[p] for p in adm.positions]
            self._update_bleu(adm.entering, ent_hashes, adm.leaving)
        if self.emb is not None:
            self.emb.remove(adm.leaving)
            self.emb.add(
                adm.entering, vectors[adm.positions] if len(adm.positions) else vectors[:0]
            )

    def _update_bleu(
        self, entering: list[int], hashes: list[np.ndarray], leaving: list[int]
    ) -> None:
        if isinstance(self.bleu, MultiReferenceSelfBLEU):
            if leaving:
                self.bleu.remove([self._hashes.pop(i) for i in leaving])
            self.bleu.add(hashes)
            if self.history.removes:
                self._hashes.update(zip(entering, hashes, strict=True))
            return
        if self.sample is not None:
            gone = self.sample.forget(leaving)
            ent, out = self.sample.admit(entering)
            by_id = dict(zip(entering, hashes, strict=True))
            self.bleu.remove(gone + out)
            self.bleu.add(ent, [by_id[i] for i in ent])
            return
        self.bleu.remove(leaving)
        self.bleu.add(entering, hashes)

    def penalty(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """``bleu_weight * selfbleu + embed_weight * cosine`` (to subtract from the reward)."""
        try:
            bleu = np.asarray(scores["selfbleu"], np.float64)
            cos = np.asarray(scores["cosine"], np.float64)
        except KeyError as exc:
            raise DataError(f"novelty scores lack the key {exc}") from exc
        if bleu.shape != cos.shape:
            raise DataError(f"novelty score shapes differ: {bleu.shape} vs {cos.shape}")
        return self.spec.bleu_weight * bleu + self.spec.embed_weight * cos

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write the history and indexes as JSON and .npy files (no pickle)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        ids = sorted(self.texts)
        arrays: dict[str, np.ndarray] = {}
        meta: dict = {
            "format": FORMAT,
            "spec": self.spec.model_dump(mode="json"),
            "ids": ids,
            "history": self.history.state(),
            "sample": self.sample.state() if self.sample is not None else None,
            "bleu": None,
            "embedding": None,
        }
        if isinstance(self.bleu, PerReferenceSelfBLEU):
            bmeta, barr = self.bleu.state()
            meta["bleu"] = {"type": "per_reference", **bmeta}
            arrays.update({f"bleu_{k}": v for k, v in barr.items()})
        elif isinstance(self.bleu, MultiReferenceSelfBLEU):
            meta["bleu"] = {"type": "multi_reference"}
        if self.emb is not None:
            emeta, earr = self.emb.state()
            meta["embedding"] = emeta
            arrays.update({f"emb_{k}": v for k, v in earr.items()})
        for name, arr in arrays.items():
            np.save(d / f"novelty_{name}.npy", arr, allow_pickle=False)
        (d / TEXTS_FILE).write_text(json.dumps([self.texts[i] for i in ids], ensure_ascii=False))
        (d / STATE_FILE).write_text(json.dumps(meta, indent=1))

    def load(self, directory: str | Path) -> None:
        """Restore a state written by :meth:`save`; later scores equal the uninterrupted run's."""
        d = Path(directory)
        try:
            meta = json.loads((d / STATE_FILE).read_text())
            texts = json.loads((d / TEXTS_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the novelty state in {d}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{d / STATE_FILE}: unknown format {meta.get('format')!r}")
        saved = NoveltySpec.model_validate(meta["spec"])
        for name in _STATE_FIELDS:
            if getattr(saved, name) != getattr(self.spec, name):
                raise ConfigError(
                    f"novelty.{name} differs from the saved state in {d} "
                    f"({getattr(saved, name)!r} there, {getattr(self.spec, name)!r} now)"
                )

        if self.use_embed and (meta.get("embedding") or {}).get("dim") is not None:
            mine, theirs = self.spec.embedder, saved.embedder
            same = (mine.type, mine.model) == (theirs.type, theirs.model)
            if same and mine.type == "hashing":
                same = mine.dim == theirs.dim
            if not same:
                raise ConfigError(
                    f"novelty.embedder differs from the saved state in {d} "
                    f"({theirs.type}:{theirs.model} there, {mine.type}:{mine.model} now); "
                    "saved embeddings cannot be mixed with another model's"
                )

        def arr(name: str) -> np.ndarray:
            try:
                return np.load(d / f"novelty_{name}.npy", allow_pickle=False)
            except OSError as exc:
                raise CheckpointError(f"missing {d}/novelty_{name}.npy: {exc}") from exc

        self._reset()
        ids = [int(i) for i in meta["ids"]]
        if len(ids) != len(texts):
            raise CheckpointError(f"{d}: {len(ids)} ids but {len(texts)} texts")
        self.texts = dict(zip(ids, texts, strict=True))
        self.history.load_state(meta["history"])
        if self.sample is not None and meta.get("sample"):
            self.sample.load_state(meta["sample"])
        bmeta = meta.get("bleu")
        if isinstance(self.bleu, PerReferenceSelfBLEU):
            if bmeta and bmeta.get("type") == "per_reference":
                self.bleu.load_state(
                    {
                        k: arr(f"bleu_{k}")
                        for k in ("slot_ids", "alive", "token_hashes", "token_offsets")
                    }
                )
            else:
                keep = (
                    ids if self.sample is None else sorted(i for i in self.sample.slots if i >= 0)
                )
                self.bleu.add(keep, self._hash([self.texts[i] for i in keep]))
        elif isinstance(self.bleu, MultiReferenceSelfBLEU):
            hashes = self._hash(texts)
            self.bleu.add(hashes)
            if self.history.removes:
                self._hashes = dict(zip(ids, hashes, strict=True))
        if self.emb is not None:
            emeta = meta.get("embedding")
            if emeta and emeta.get("dim") is not None:
                names = ["total"] + (["ids", "vectors"] if self.emb.keep_vectors else [])
                self.emb.load_state(emeta, {k: arr(f"emb_{k}") for k in names})
            elif ids:
                self.emb.add(ids, self._embed(texts))
