"""Incremental SelfBLEU of new attacks against a history, from n-gram indexes.

Both classes match NLTK's ``sentence_bleu(..., weights=(1/n,) * n,
smoothing_function=SmoothingFunction().method1)`` (checked to 1e-9 by the tests), whose rules
are, for a hypothesis x of L tokens and BLEU-n:

* ``p_k = m_k / D_k`` with ``m_k`` the clipped k-gram matches and ``D_k = max(1, L - k + 1)``;
  method1 replaces a zero ``m_k`` by ``0.1`` (``p_k = 0.1 / D_k``);
* the score is 0 when no unigram matches (``m_1 == 0``), in particular for an empty x;
* ``BLEU-n = BP * exp(sum_k log(p_k) / n)`` with ``BP = 1`` if ``L > r``, ``0`` if ``L == 0``,
  else ``exp(1 - r / L)``, r being the reference length closest to L (ties to the shorter).

Texts arrive as arrays of 64-bit token hashes (see :mod:`sparring.novelty._text`); clipped
counts are sizes of intersections of occurrence-indexed feature sets.

:class:`MultiReferenceSelfBLEU` (all history prompts as the references of one BLEU): the clip
``min(count_x(g), max_h count_h(g))`` is the number of x's occurrence features present in at
least one live history item, so a map feature -> number of live items holding it (plus a count of
live lengths for the closest reference length) gives an exact score in O(F log N) per attack, F
being the attack's number of features (about L * max_order), N the history size: the cost does
not grow with the history beyond the logarithm of the index lookups.

:class:`PerReferenceSelfBLEU` (the method: BLEU against each history prompt, averaged) is
documented on the class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sparring.novelty._runs import CountRuns, PostingRuns
from sparring.novelty._text import featurize, flatten

_LOG_EPS = math.log(0.1)


def _closest_ref_length(sorted_lengths: np.ndarray, hyp_len: int) -> int:
    i = int(np.searchsorted(sorted_lengths, hyp_len))
    cands = [int(sorted_lengths[j]) for j in (i - 1, i) if 0 <= j < len(sorted_lengths)]
    return min(cands, key=lambda r: (abs(r - hyp_len), r))


def _brevity_penalty(ref_len: int, hyp_len: int) -> float:
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


def bleu_from_counts(matches: Sequence[int], hyp_len: int, ref_len: int, n: int) -> float:
    """NLTK method1 sentence BLEU-n from clipped match counts ``matches[k-1]`` (k = 1..n)."""
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    logs = []
    for k in range(1, n + 1):
        denom = max(1, hyp_len - k + 1)
        m = matches[k - 1]
        p = m / denom if m > 0 else 0.1 / denom
        logs.append((1.0 / n) * math.log(p))
    return _brevity_penalty(ref_len, hyp_len) * math.exp(math.fsum(logs))


class _LengthCounts:
    """Multiset of non-negative lengths."""

    def __init__(self) -> None:
        self.counts = np.zeros(64, np.int64)

    def add(self, lengths: np.ndarray, sign: int = 1) -> None:
        if len(lengths) == 0:
            return
        top = int(lengths.max())
        if top >= len(self.counts):
            grown = np.zeros(max(top + 1, 2 * len(self.counts)), np.int64)
            grown[: len(self.counts)] = self.counts
            self.counts = grown
        np.add.at(self.counts, lengths.astype(np.intp), sign)

    def distinct(self) -> np.ndarray:
        return np.flatnonzero(self.counts)

    def max(self) -> int:
        nz = np.flatnonzero(self.counts)
        return int(nz[-1]) if len(nz) else 0


class MultiReferenceSelfBLEU:
    """Multi-reference sentence BLEU of each attack against all live history items at once."""

    def __init__(self, orders: Sequence[int]):
        self.orders = list(orders)
        self.max_order = max(self.orders)
        self.features = CountRuns()
        self.lengths = _LengthCounts()
        self.n_live = 0

    def __len__(self) -> int:
        return self.n_live

    def add(self, hashes: Sequence[np.ndarray]) -> None:
        flat, offsets = flatten(hashes)
        keys, _, _ = featurize(flat, offsets, self.max_order)
        self.features.add(keys, +1)
        self.lengths.add(np.diff(offsets), +1)
        self.n_live += len(hashes)

    def remove(self, hashes: Sequence[np.ndarray]) -> None:
        flat, offsets = flatten(hashes)
        keys, _, _ = featurize(flat, offsets, self.max_order)
        self.features.add(keys, -1)
        self.lengths.add(np.diff(offsets), -1)
        self.n_live -= len(hashes)

    def score(self, hashes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros(len(hashes), np.float64)
        if self.n_live == 0 or len(hashes) == 0:
            return out
        flat, offsets = flatten(hashes)
        keys, owner, order = featurize(flat, offsets, self.max_order)
        present = np.zeros(len(keys), bool)
        if len(keys):
            uk, inv = np.unique(keys, return_inverse=True)
            present = (self.features.lookup(uk) > 0)[inv]
        kmax = self.max_order
        matches = np.bincount(
            owner * kmax + (order.astype(np.int64) - 1),
            weights=present,
            minlength=len(hashes) * kmax,
        ).reshape(len(hashes), kmax)
        ref_lengths = self.lengths.distinct()
        for q, hyp_len in enumerate(np.diff(offsets).tolist()):
            r = _closest_ref_length(ref_lengths, hyp_len)
            m = [int(v) for v in matches[q]]
            out[q] = math.fsum(bleu_from_counts(m, hyp_len, r, n) for n in self.orders) / len(
                self.orders
            )
        return out

    def state(self) -> dict:
        return {"n_live": self.n_live}


class PerReferenceSelfBLEU:
    """The method's SelfBLEU: mean over orders of the mean over history items h of BLEU-n(x, h).

    Exact formulation. With one reference h of length M, ``BLEU-n(x, h) = [m_1 > 0] * BP(L, M) *
    prod_{k<=n} (max(m_k, 0.1) / D_k) ** (1 / n)``, where ``m_k = m_k(x, h)`` are the clipped
    k-gram matches (method1 turns a zero count into 0.1). Hence

    * an item sharing no word with x contributes exactly 0 (NLTK returns 0 when ``m_1 == 0``):
      no smoothed "0.1" term survives for it, so nothing needs a closed form for the items that
      share nothing with x;
    * an item sharing no trigram with x (``m_k = 0`` for every ``k >= 3``, since a shared k-gram
      implies a shared (k-1)-gram) contributes ``T[m_1, m_2, M]``, a per-attack table built in
      closed form (``BP`` depends on the lengths only); the sum over those items is one gather
      from that table per item;
    * the E items sharing a trigram with x, and items of ``LONG`` tokens or more, are scored one
      by one (vectorised) from their match counts, replacing their table value.

    Match counts come from an inverted index feature -> items (:class:`PostingRuns`, log-
    structured sorted runs); features held by at least 1/16 of the items ("the", "how to") are
    kept as dense per-item uint8 rows instead, so they cost one vector add rather than a gather
    of their postings.

    Complexity, honestly: exact per-reference SelfBLEU cannot be sub-linear in the history in
    the worst case. Its value sums a non-linear function of the overlaps ``m_k(x, h)`` over all
    items, and as soon as x contains a word that most items contain ("?", "how") every item
    carries a distinct nonzero term; even deciding whether some item shares no word with x is
    the orthogonal-vectors problem, for which no index answers in sub-linear time per query
    (under the OV conjecture). So the cost per attack is O(N + P + E): about a dozen byte- or
    int-wide vectorised passes over the N history items (the dense-row adds and the table
    gather; roughly 10 ns per item per attack on one core, measured by
    ``benchmarks/novelty.py``), plus the P postings of the attack's rarer features, plus the E
    items sharing a trigram with it. For a strictly bounded cost use ``selfbleu_sample`` (a
    uniform reservoir sample of the history: cost O(sample), standard error at most
    ``0.5 / sqrt(sample)``).

    Items are removed lazily (marked dead, excluded from the table) and the index is rebuilt
    when dead items outnumber live ones, so removal is amortised O(features of the item).
    """

    LONG = 256  # items of at least this many tokens are scored one by one
    TABLE_MAX = 1 << 20  # largest closed-form (m1, m2, length) table per attack
    DENSE_MIN_DF = 1024
    DENSE_FRACTION = 16  # features in at least 1/16 of the items are dense
    DENSE_MAX_ROWS = 256
    COMPACT_MIN_DEAD = 4096  # removed items are dropped once they outnumber live ones

    def __init__(self, orders: Sequence[int]):
        self.orders = list(orders)
        self.max_order = max(self.orders)
        self._reset(capacity=1024)

    # ------------------------------------------------------------------ storage
    def _reset(self, capacity: int) -> None:
        self.n_slots = 0
        self.n_live = 0
        self.slot_ids = np.zeros(capacity, np.int64)
        self.alive = np.zeros(capacity, bool)
        self.length = np.zeros(capacity, np.int32)
        self.code = np.zeros(capacity, np.int32)  # length if alive and short, else 0
        self.tokens: list[np.ndarray | None] = []
        self.postings = PostingRuns()
        self.lengths = _LengthCounts()
        self.dense_keys = np.zeros(0, np.int64)  # sorted
        self.dense_rows = np.zeros(0, np.int64)  # row of each sorted key
        self.dense = np.zeros((0, capacity), np.uint8)

    def __len__(self) -> int:
        return self.n_live

    def _grow(self, needed: int) -> None:
        cap = len(self.alive)
        if needed <= cap:
            return
        new_cap = max(needed, 2 * cap)
        for name in ("slot_ids", "alive", "length", "code"):
            old = getattr(self, name)
            new = np.zeros(new_cap, old.dtype)
            new[:cap] = old
            setattr(self, name, new)
        dense = np.zeros((self.dense.shape[0], new_cap), np.uint8)
        dense[:, :cap] = self.dense
        self.dense = dense

    def add(self, ids: Sequence[int], hashes: Sequence[np.ndarray]) -> None:
        """Append history items with (increasing) external ids."""
        self._add_slots(np.asarray(ids, np.int64), list(hashes), np.ones(len(hashes), bool))

    def _add_slots(self, ids: np.ndarray, hashes: list, alive: np.ndarray) -> None:
        n_new = len(ids)
        if n_new == 0:
            return
        if self.n_slots and ids[0] <= self.slot_ids[self.n_slots - 1]:
            raise ValueError("history ids must increase")
        start = self.n_slots
        self._grow(start + n_new)
        slots = np.arange(start, start + n_new, dtype=np.int64)
        hashes = [h if a else np.zeros(0, np.uint64) for h, a in zip(hashes, alive, strict=True)]
        flat, offsets = flatten(hashes)
        lengths = np.diff(offsets).astype(np.int32)
        keys, owner, _ = featurize(flat, offsets, self.max_order)
        slot_of = slots[owner]
        self.postings.add(keys, slot_of)
        if len(self.dense_keys) and len(keys):
            pos = np.searchsorted(self.dense_keys, keys)
            pos_c = np.minimum(pos, len(self.dense_keys) - 1)
            hit = self.dense_keys[pos_c] == keys
            self.dense[self.dense_rows[pos_c[hit]], slot_of[hit]] = 1
        self.slot_ids[slots] = ids
        self.alive[slots] = alive
        self.length[slots] = lengths
        self.code[slots] = np.where(alive & (lengths < self.LONG), lengths, 0)
        self.tokens.extend(h if a else None for h, a in zip(hashes, alive, strict=True))
        self.lengths.add(lengths[alive].astype(np.int64))
        self.n_slots += n_new
        self.n_live += int(alive.sum())

    def remove(self, ids: Sequence[int]) -> None:
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return
        slots = np.searchsorted(self.slot_ids[: self.n_slots], ids)
        if np.any(slots >= self.n_slots) or np.any(
            self.slot_ids[np.minimum(slots, self.n_slots - 1)] != ids
        ):
            raise KeyError("removing an id that is not in the history")
        if not self.alive[slots].all():
            raise KeyError("removing an id twice")
        self.alive[slots] = False
        self.code[slots] = 0
        self.lengths.add(self.length[slots].astype(np.int64), -1)
        for s in slots.tolist():
            self.tokens[s] = None
        self.n_live -= len(ids)
        dead = self.n_slots - self.n_live
        if dead >= max(self.n_live, self.COMPACT_MIN_DEAD):
            self.compact()

    def compact(self) -> None:
        """Drop dead items and rebuild the index (the scores do not change)."""
        keep = np.flatnonzero(self.alive[: self.n_slots])
        ids = self.slot_ids[keep].copy()
        hashes = [self.tokens[i] for i in keep.tolist()]
        self._reset(capacity=max(1024, len(keep)))
        self._add_slots(ids, hashes, np.ones(len(keep), bool))

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        n = self.n_slots
        alive = self.alive[:n]
        toks = [t for t in self.tokens if t is not None]
        flat, offsets = flatten(toks)
        meta = {"n_slots": n}
        arrays = {
            "slot_ids": self.slot_ids[:n].copy(),
            "alive": alive.copy(),
            "token_hashes": flat,
            "token_offsets": offsets,
        }
        return meta, arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        ids = arrays["slot_ids"].astype(np.int64)
        alive = arrays["alive"].astype(bool)
        flat, offsets = arrays["token_hashes"].astype(np.uint64), arrays["token_offsets"]
        live_hashes = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        hashes: list = []
        it = iter(live_hashes)
        for a in alive.tolist():
            hashes.append(next(it) if a else np.zeros(0, np.uint64))
        self._reset(capacity=max(1024, len(ids)))
        self._add_slots(ids, hashes, alive)

    # ------------------------------------------------------------------ scoring
    def _promote(self, uk: np.ndarray, df: np.ndarray, looked) -> None:
        room = self.DENSE_MAX_ROWS - len(self.dense_keys)
        threshold = max(self.DENSE_MIN_DF, self.n_slots // self.DENSE_FRACTION)
        if room <= 0:
            return
        cand = np.flatnonzero(df >= threshold)
        if len(cand) == 0:
            return
        if len(self.dense_keys):
            cand = cand[~np.isin(uk[cand], self.dense_keys)]
        if len(cand) == 0:
            return
        cand = cand[np.lexsort((uk[cand], -df[cand]))][:room]
        first = self.dense.shape[0]
        rows = np.zeros((len(cand), len(self.alive)), np.uint8)
        for j, c in enumerate(cand.tolist()):
            rows[j, self.postings.gather(looked, np.array([c]))] = 1
        self.dense = np.concatenate([self.dense, rows]) if first else rows
        keys = np.concatenate([self.dense_keys, uk[cand]])
        row_ids = np.concatenate([self.dense_rows, np.arange(first, first + len(cand))])
        order = np.argsort(keys)
        self.dense_keys, self.dense_rows = keys[order], row_ids[order]

    def score(self, hashes: Sequence[np.ndarray]) -> np.ndarray:
        n_q = len(hashes)
        out = np.zeros(n_q, np.float64)
        if self.n_live == 0 or n_q == 0:
            return out
        flat, offsets = flatten(hashes)
        lens = np.diff(offsets)
        keys, owner, order = featurize(flat, offsets, self.max_order)
        if len(keys) == 0:
            return out
        uk, inv = np.unique(keys, return_inverse=True)
        looked = self.postings.lookup(uk)
        df = np.zeros(len(uk), np.int64)
        for _, count in looked:
            df += count
        self._promote(uk, df, looked)
        drow = np.full(len(uk), -1, np.int64)
        if len(self.dense_keys):
            pos = np.searchsorted(self.dense_keys, uk)
            pos_c = np.minimum(pos, len(self.dense_keys) - 1)
            hit = self.dense_keys[pos_c] == uk
            drow[hit] = self.dense_rows[pos_c[hit]]
        n = self.n_slots
        feat_row = drow[inv]
        # dense features: (owner, order, row), grouped by owner
        dmask = feat_row >= 0
        d_owner, d_order, d_row = owner[dmask], order[dmask], feat_row[dmask]
        d_bounds = np.searchsorted(d_owner, np.arange(n_q + 1))
        # postings of the other features for the whole batch, per run in feature order; the
        # features are sorted by (owner, order), so each (attack, order) owns one slice per run
        rare = np.flatnonzero(~dmask)
        r_bounds = np.searchsorted(owner[rare] * 16 + order[rare], np.arange(n_q * 16 + 16))
        per_run = []
        for (start, count), run in zip(looked, self.postings.runs, strict=True):
            c = count[inv[rare]]
            st = start[inv[rare]]
            cum = np.zeros(len(rare) + 1, np.int64)
            np.cumsum(c, out=cum[1:])
            nz = np.flatnonzero(c)
            slots = run[2]
            if len(nz):
                gathered = np.concatenate(
                    [slots[i : i + j] for i, j in zip(st[nz].tolist(), c[nz].tolist(), strict=True)]
                )
            else:
                gathered = np.zeros(0, np.int32)
            per_run.append((gathered, cum[r_bounds]))
        ctx = _BatchContext(
            code=self.code[:n],
            length=self.length[:n],
            long_slots=np.flatnonzero(self.alive[:n] & (self.length[:n] >= self.LONG)),
            rows_r=min(self.lengths.max(), self.LONG - 1) + 1,
            common=self._common_rows(d_owner, d_order, d_row, n_q, n),
            short=self.code[:n] > 0,
        )
        tables: dict[int, list[np.ndarray]] = {}
        for q in range(n_q):
            hyp_len = int(lens[q])
            if hyp_len == 0:
                continue
            a, b = d_bounds[q], d_bounds[q + 1]
            dense_q = list(zip(d_order[a:b].tolist(), d_row[a:b].tolist(), strict=True))
            rare_q = [
                (k, g[cb[q * 16 + k] : cb[q * 16 + k + 1]])
                for g, cb in per_run
                for k in range(1, self.max_order + 1)
                if cb[q * 16 + k + 1] > cb[q * 16 + k]
            ]
            if hyp_len not in tables:
                tables[hyp_len] = self._tables(hyp_len)
            out[q] = self._score_one(hyp_len, dense_q, rare_q, ctx, tables[hyp_len])
        return out / self.n_live

    def _common_rows(self, d_owner, d_order, d_row, n_q, n) -> dict:
        """Per order: the dense rows used by at least half of the batch's attacks, and their sum.

        An attack then starts from that sum and corrects it, instead of adding every row."""
        common = {}
        if n_q < 4 or len(d_row) == 0:
            return common
        for k in np.unique(d_order).tolist():
            rows, users = np.unique(d_row[d_order == k], return_counts=True)
            chosen = rows[users * 2 >= n_q][:255]
            if len(chosen) < 3:
                continue
            total = np.zeros(n, np.uint8)
            for r in chosen.tolist():
                np.add(total, self.dense[r, :n], out=total)
            common[int(k)] = (set(chosen.tolist()), total)
        return common

    def _tables(self, hyp_len: int) -> list[np.ndarray]:
        """``ek[k][i, m] = (max(m, 0.1) / D_k) ** (1 / N_i)`` for the i-th order ``N_i >= k``, 1
        for ``N_i < k``; ``ek[1][:, 0] = 0`` (no unigram match scores 0)."""
        kmax = self.max_order
        inv_n = 1.0 / np.asarray(self.orders, np.float64)[:, None]
        m_axis = np.log(np.maximum(np.arange(hyp_len + 1, dtype=np.float64), 0.1))
        ek = [np.zeros(0)]
        for k in range(1, kmax + 1):
            g = m_axis - math.log(max(1, hyp_len - k + 1))
            t = np.exp(g[None, :] * inv_n)
            t[np.asarray(self.orders) < k] = 1.0
            ek.append(t)
        ek[1][:, 0] = 0.0
        return ek

    def _score_one(self, hyp_len: int, dense_q, rare_q, ctx: _BatchContext, ek) -> float:
        code = ctx.code
        n = len(code)
        kmax = self.max_order
        n_ord = len(self.orders)
        rows_r = ctx.rows_r
        small = hyp_len <= 255
        # acc[k - 1][i] = m_k(x, item i): clipped k-gram matches
        acc = np.zeros((kmax, n), np.uint8 if small else np.uint16)
        by_order: dict[int, set[int]] = {}
        for k, r in dense_q:
            by_order.setdefault(k, set()).add(r)
        for k, rows in by_order.items():
            out = acc[k - 1]
            common = ctx.common.get(k) if small else None
            if common is not None and len(rows & common[0]) > len(common[0] - rows) + 1:
                # start from the batch's shared sum (uint8 wrap-around is exact: m_k <= 255)
                out[:] = common[1]
                for r in sorted(common[0] - rows):
                    np.subtract(out, self.dense[r, :n], out=out)
                rows = rows - common[0]
            for r in sorted(rows):
                np.add(out, self.dense[r, :n], out=out)
        one = acc.dtype.type(1)
        for k, slots in rare_q:
            np.add.at(acc[k - 1], slots, one)
        c1 = hyp_len + 1
        c2 = max(hyp_len, 1)
        two = small and kmax >= 2 and c1 * c2 * rows_r <= self.TABLE_MAX
        lens_axis = np.arange(rows_r, dtype=np.float64)
        bp = np.where(hyp_len > lens_axis, 1.0, np.exp(1.0 - lens_axis / hyp_len))
        bp[0] = 0.0  # code 0: dead, empty or long items (long ones are scored one by one)

        # closed form over (m1[, m2], length) for the items with no match of order > split
        split = 2 if two else 1
        if two:
            head = (ek[1][:, :, None] * ek[2][:, None, :c2]).reshape(n_ord, c1 * c2)
            i12 = np.multiply(acc[0], np.uint16(c2), dtype=np.uint16)
            np.add(i12, acc[1], out=i12)
            head_idx = i12
        else:
            head = ek[1]
            head_idx = acc[0]
        rest = np.ones(n_ord)
        for k in range(split + 1, kmax + 1):
            rest *= ek[k][:, 0]
        s = rest @ head / n_ord
        idx = np.multiply(head_idx, np.int32(rows_r), dtype=np.int32)
        np.add(idx, code, out=idx)
        table = np.multiply.outer(s, bp).reshape(-1)
        total = float(np.take(table, idx).sum())

        # items scored one by one: a match of order > split, or long
        if kmax > split:
            # short live items (code > 0) with a match of order split + 1; a bool array takes
            # numpy's fast nonzero path
            exact = np.flatnonzero(np.logical_and(acc[split], ctx.short))
            if len(exact):
                total -= float(np.take(table, idx[exact]).sum())
                bp_e = np.take(bp, code[exact])
                total += self._exact_sum(exact, bp_e, acc, head, head_idx, ek, split)
        if len(ctx.long_slots):
            ref = ctx.length[ctx.long_slots].astype(np.float64)
            bp_l = np.where(hyp_len > ref, 1.0, np.exp(1.0 - ref / hyp_len))
            total += self._exact_sum(ctx.long_slots, bp_l, acc, head, head_idx, ek, split)
        return total

    def _exact_sum(self, items, bp_items, acc, head, head_idx, ek, split) -> float:
        """Sum of the BLEU averages of ``items`` from their match counts."""
        prod = np.take(head, head_idx[items], axis=1)  # (orders, items)
        for k in range(split + 1, self.max_order + 1):
            prod *= np.take(ek[k], acc[k - 1][items], axis=1)
        val = prod.sum(axis=0)
        val *= bp_items / len(self.orders)
        return float(val.sum())


class _BatchContext:
    __slots__ = ("code", "common", "length", "long_slots", "rows_r", "short")

    def __init__(self, code, length, long_slots, rows_r, common, short):
        self.short = short
        self.code = code
        self.length = length
        self.long_slots = long_slots
        self.rows_r = rows_r
        self.common = common
