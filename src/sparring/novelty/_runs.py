"""Append-friendly sorted indexes over 64-bit feature keys (log-structured runs).

Each index is a list of immutable sorted *runs*, newest last. A batch of insertions becomes a
new run; while the second-newest run is at most twice the size of the newest, the two are merged
(a stable merge of two sorted arrays), so there are O(log(N / batch)) runs and each posting is
merged O(log(N / batch)) times. A lookup of q keys costs one binary search per run and key.
"""

from __future__ import annotations

import numpy as np


def _segments(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Indices ``concat(arange(s, s + c) for s, c in zip(starts, counts))`` (int32 when they
    fit, to halve the scratch memory of large merges)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    keep = counts > 0
    starts, counts = starts[keep], counts[keep]
    ends = np.cumsum(counts)
    dtype = np.int32 if max(total, int(starts.max()) + 1) < 2**31 else np.int64
    shift = np.repeat((starts - (ends - counts)).astype(dtype), counts)
    shift += np.arange(total, dtype=dtype)
    return shift


class PostingRuns:
    """Multimap key -> slots (int32), slots ascending within a key across runs."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # ukeys, offsets, slots

    def __len__(self) -> int:
        return sum(len(r[2]) for r in self.runs)

    @staticmethod
    def _make(keys: np.ndarray, slots: np.ndarray, presorted: bool = False):
        if not presorted:  # slots arrive ascending: a stable sort by key keeps them so
            order = np.argsort(keys, kind="stable")
            keys, slots = keys[order], slots[order]
        if len(keys) == 0:
            return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32)
        new = np.empty(len(keys), dtype=bool)
        new[0] = True
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        offsets = np.append(starts, len(keys)).astype(np.int64)
        return keys[starts], offsets, slots.astype(np.int32, copy=False)

    def clear(self) -> None:
        self.runs = []

    def add(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Insert postings given in ascending slot order; every slot must be larger than any
        slot already present."""
        if len(keys) == 0:
            return
        self.runs.append(self._make(keys, slots))
        while len(self.runs) >= 2 and len(self.runs[-2][2]) <= 2 * len(self.runs[-1][2]):
            b = self.runs.pop()
            a = self.runs.pop()
            self.runs.append(self._merge(a, b))

    @staticmethod
    def _merge(a, b):
        """Merge two runs, a older than b, at the level of distinct keys: the postings are
        copied once, block by block (no sort over postings, about 16 bytes of scratch each)."""
        (ka, oa, sa), (kb, ob, sb) = a, b
        keys = np.concatenate([ka, kb])
        order = np.argsort(keys, kind="stable")  # a merge of two sorted runs; a first on ties
        keys = keys[order]
        counts = np.concatenate([np.diff(oa), np.diff(ob)])[order]
        starts = np.concatenate([oa[:-1], ob[:-1] + len(sa)])[order]
        new = np.empty(len(keys), dtype=bool)
        new[0] = True
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
        first = np.flatnonzero(new)
        offsets = np.zeros(len(first) + 1, np.int64)
        np.cumsum(np.add.reduceat(counts, first), out=offsets[1:])
        slots = np.concatenate([sa, sb])[_segments(starts, counts)]
        return keys[first], offsets, slots

    def lookup(self, ukeys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """For sorted unique query keys: per run, (start, count) of each key's postings."""
        out = []
        for rk, off, _ in self.runs:
            pos = np.searchsorted(rk, ukeys)
            pos_c = np.minimum(pos, len(rk) - 1) if len(rk) else pos
            found = (
                (pos < len(rk)) & (rk[pos_c] == ukeys) if len(rk) else np.zeros(len(ukeys), bool)
            )
            start = np.where(found, off[pos_c] if len(rk) else 0, 0)
            count = np.where(found, off[pos_c + 1] - off[pos_c] if len(rk) else 0, 0)
            out.append((start.astype(np.int64), count.astype(np.int64)))
        return out

    def gather(self, looked: list[tuple[np.ndarray, np.ndarray]], which: np.ndarray) -> np.ndarray:
        """Concatenated slots of the looked-up keys selected by index array ``which``."""
        parts = []
        for (start, count), run in zip(looked, self.runs, strict=True):
            c = count[which]
            if c.any():
                parts.append(run[2][_segments(start[which], c)])
        if not parts:
            return np.zeros(0, np.int32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class CountRuns:
    """Map key -> integer count (insertions +1, removals -1), zero counts dropped on merge."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(r[0]) for r in self.runs)

    def add(self, keys: np.ndarray, sign: int = 1) -> None:
        if len(keys) == 0:
            return
        u, c = np.unique(keys, return_counts=True)
        self.runs.append((u, c.astype(np.int64) * sign))
        while len(self.runs) >= 2 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            b = self.runs.pop()
            a = self.runs.pop()
            keys = np.concatenate([a[0], b[0]])
            counts = np.concatenate([a[1], b[1]])
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
            new = np.empty(len(keys), dtype=bool)
            new[0] = True
            np.not_equal(keys[1:], keys[:-1], out=new[1:])
            starts = np.flatnonzero(new)
            sums = np.add.reduceat(counts, starts)
            keep = sums != 0
            self.runs.append((keys[starts][keep], sums[keep]))

    def lookup(self, ukeys: np.ndarray) -> np.ndarray:
        """Total count of each of the (sorted) query keys."""
        total = np.zeros(len(ukeys), np.int64)
        for rk, rc in self.runs:
            if len(rk) == 0:
                continue
            pos = np.searchsorted(rk, ukeys)
            pos_c = np.minimum(pos, len(rk) - 1)
            found = (pos < len(rk)) & (rk[pos_c] == ukeys)
            total += np.where(found, rc[pos_c], 0)
        return total
