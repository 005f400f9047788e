"""Embedding novelty: mean cosine (or k-nearest-neighbour cosine) to the history embeddings.

``mean_cosine``: the mean of ``<v, h>`` over unit history vectors h is ``<v, sum_h h> / N``; the
sum is kept in float64 and updated on every insertion and removal, so a score costs O(dim) per
attack whatever the history size (rounding of the running sum: about 1e-16 relative per update;
it is never recomputed, so a saved and restored run continues bit for bit).

``knn``: the mean of the ``k`` largest cosines among the newest ``max_items`` live history
items, by exact brute force over that capped matrix (O(max_items * dim) per batch row, one
float32 matrix product per batch). ``k = 1`` is the maximum similarity.
"""

from __future__ import annotations

import numpy as np

from sparring.errors import DataError


class EmbeddingIndex:
    COMPACT_MIN_DEAD = 4096  # rows of removed items are dropped once they outnumber live ones

    def __init__(
        self, mode: str, k: int = 10, max_items: int = 100_000, keep_vectors: bool = False
    ):
        self.mode = mode
        self.k = k
        self.max_items = max_items
        self.keep_vectors = keep_vectors or mode == "knn"
        self.dim: int | None = None
        self.total: np.ndarray | None = None
        self.n_live = 0
        self.n_slots = 0
        self.slot_ids = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)
        self.vectors = np.zeros((0, 0), np.float32)

    def __len__(self) -> int:
        return self.n_live

    def _init_dim(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
            self.total = np.zeros(dim, np.float64)
            self.vectors = np.zeros((0, dim), np.float32)
        elif dim != self.dim:
            raise DataError(f"embedding dimension changed from {self.dim} to {dim}")

    def _grow(self, needed: int) -> None:
        cap = len(self.alive)
        if needed <= cap:
            return
        new_cap = max(needed, 2 * cap, 1024)
        ids = np.zeros(new_cap, np.int64)
        ids[:cap] = self.slot_ids
        alive = np.zeros(new_cap, bool)
        alive[:cap] = self.alive
        self.slot_ids, self.alive = ids, alive
        if self.keep_vectors:
            vec = np.zeros((new_cap, self.dim), np.float32)
            vec[:cap] = self.vectors
            self.vectors = vec

    def add(self, ids, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.asarray(vectors, np.float32)
        self._init_dim(vectors.shape[1])
        for v in vectors.astype(np.float64):
            self.total += v
        self.n_live += len(ids)
        if not self.keep_vectors:
            return
        start = self.n_slots
        self._grow(start + len(ids))
        self.slot_ids[start : start + len(ids)] = ids
        self.alive[start : start + len(ids)] = True
        self.vectors[start : start + len(ids)] = vectors
        self.n_slots += len(ids)

    def remove(self, ids) -> None:
        if len(ids) == 0:
            return
        if not self.keep_vectors:
            raise RuntimeError("this embedding index keeps no vectors and cannot remove items")
        ids = np.asarray(ids, np.int64)
        slots = np.searchsorted(self.slot_ids[: self.n_slots], ids)
        for s in slots.tolist():
            self.total -= self.vectors[s].astype(np.float64)
        self.alive[slots] = False
        self.n_live -= len(ids)
        if self.n_slots - self.n_live >= max(self.n_live, self.COMPACT_MIN_DEAD):
            keep = np.flatnonzero(self.alive[: self.n_slots])
            n = len(keep)
            self.slot_ids[:n] = self.slot_ids[keep]
            self.vectors[:n] = self.vectors[keep]
            self.alive[:n] = True
            self.alive[n:] = False
            self.n_slots = n

    def score(self, vectors: np.ndarray) -> np.ndarray:
        out = np.zeros(len(vectors), np.float64)
        if self.n_live == 0 or len(vectors) == 0:
            return out
        v = np.asarray(vectors, np.float64)
        if self.mode == "mean_cosine":
            return (v @ self.total) / self.n_live
        cand = np.flatnonzero(self.alive[: self.n_slots])[-self.max_items :]
        sims = (np.asarray(vectors, np.float32) @ self.vectors[cand].T).astype(np.float64)
        k = min(self.k, len(cand))
        top = np.partition(sims, len(cand) - k, axis=1)[:, len(cand) - k :]
        top.sort(axis=1)
        return top.mean(axis=1)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"n_live": self.n_live, "dim": self.dim}
        arrays: dict[str, np.ndarray] = {}
        if self.total is not None:
            arrays["total"] = self.total.copy()
        if self.keep_vectors and self.dim is not None:
            keep = np.flatnonzero(self.alive[: self.n_slots])
            arrays["ids"] = self.slot_ids[keep].copy()
            arrays["vectors"] = self.vectors[keep].copy()
        return meta, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.__init__(self.mode, self.k, self.max_items, self.keep_vectors)
        if meta.get("dim") is None:
            return
        self._init_dim(int(meta["dim"]))
        if self.keep_vectors:
            ids = arrays["ids"].astype(np.int64)
            self._grow(len(ids))
            self.slot_ids[: len(ids)] = ids
            self.alive[: len(ids)] = True
            self.vectors[: len(ids)] = arrays["vectors"]
            self.n_slots = len(ids)
        self.total = arrays["total"].astype(np.float64).copy()
        self.n_live = int(meta["n_live"])
