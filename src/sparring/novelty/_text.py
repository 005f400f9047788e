"""Word tokenisation, stable token hashes and occurrence-indexed n-gram features.

Tokeniser: ``nltk`` is NLTK's ``NLTKWordTokenizer`` (the word-level half of
``nltk.word_tokenize``; it needs no downloaded data). ``word_tokenize`` first splits sentences
with the punkt model, which is not available offline; without that split a period inside the
text stays attached to its word (``"lie."``) while the final one is split off, exactly as
``NLTKWordTokenizer`` does on a single sentence. ``whitespace`` splits on runs of white space.

Features: every token is hashed to 64 bits (BLAKE2b of its UTF-8 bytes: stable across processes
and machines), n-grams are hashed by a rolling 64-bit mix of their token hashes, and the t-th
occurrence (t = 0, 1, ...) of an n-gram in one text is a distinct *feature*. With occurrence
features, BLEU's clipped count ``min(count_x(g), count_h(g))`` is the size of the intersection of
the two texts' feature sets, and the multi-reference clip ``min(count_x(g), max_h count_h(g))``
is the number of the attack's features present in at least one reference. All comparisons are
exact up to 64-bit hash collisions: with D distinct features in play the chance of any collision
is below D**2 / 2**65 (3e-6 at D = 10 million).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

_U64 = np.uint64
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_STEP = _U64(0x9E3779B97F4A7C15)
_OCC = _U64(0xD6E8FEB86659FD93)
_S30, _S27, _S31 = _U64(30), _U64(27), _U64(31)

_TOKEN_CACHE: dict[str, int] = {}
_TOKEN_CACHE_MAX = 4_000_000
_WHITESPACE = re.compile(r"\S+")


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wraps on overflow, as intended)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


class WordTokenizer:
    """Word tokeniser of the SelfBLEU term (see the module docstring)."""

    def __init__(self, kind: Literal["nltk", "whitespace"] = "nltk", lowercase: bool = False):
        self.kind = kind
        self.lowercase = lowercase
        self._nltk = None

    def __call__(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.kind == "whitespace":
            return _WHITESPACE.findall(text)
        if self._nltk is None:
            from nltk.tokenize.destructive import NLTKWordTokenizer

            self._nltk = NLTKWordTokenizer()
        return self._nltk.tokenize(text)

    def many(self, texts: Sequence[str]) -> list[list[str]]:
        return [self(t) for t in texts]


def token_hashes(tokens: Sequence[str]) -> np.ndarray:
    """Stable 64-bit hashes of ``tokens`` (uint64 array)."""
    cache = _TOKEN_CACHE
    out = np.empty(len(tokens), dtype=_U64)
    for i, tok in enumerate(tokens):
        h = cache.get(tok)
        if h is None:
            if len(cache) >= _TOKEN_CACHE_MAX:
                cache.clear()
            digest = hashlib.blake2b(tok.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            h = cache[tok] = int.from_bytes(digest, "little")
        out[i] = h
    return out


def flatten(hashes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-text hash arrays; returns (flat uint64, offsets int64 of len n+1)."""
    lengths = np.fromiter((len(h) for h in hashes), dtype=np.int64, count=len(hashes))
    offsets = np.zeros(len(hashes) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(hashes).astype(_U64, copy=False) if len(hashes) else np.zeros(0, _U64)
    return flat, offsets


def featurize(
    flat: np.ndarray, offsets: np.ndarray, max_order: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occurrence-indexed n-gram features of orders 1..max_order of each text.

    Returns ``(keys int64, owner int64, order int8)``, grouped by (owner, order) in that order
    (keys in text order within a group); within one text and order the keys are distinct.
    """
    n_texts = len(offsets) - 1
    total = len(flat)
    if total == 0 or n_texts == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
    lengths = np.diff(offsets)
    owner_of_pos = np.repeat(np.arange(n_texts, dtype=np.int64), lengths)
    end_of_pos = offsets[1:][owner_of_pos]
    pos = np.arange(total, dtype=np.int64)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    h = _mix(flat ^ _STEP)
    for k in range(1, max_order + 1):
        if k > 1:
            if total - k + 1 <= 0:
                break
            h = _mix(h[: total - k + 1] * _STEP + _mix(flat[k - 1 :] + _U64(k)))
        valid = pos[: len(h)] + k <= end_of_pos[: len(h)]
        if not valid.any():
            break
        keys = h[valid]
        owner = owner_of_pos[: len(h)][valid]  # ascending
        # the t-th repeat (t >= 1) of an n-gram within a text is a feature of its own: group
        # equal (text, n-gram) pairs by sorting a hash of both
        pair = _mix(keys ^ (owner.astype(_U64) * _OCC))
        srt = np.argsort(pair)
        ps = pair[srt]
        same = ps[1:] == ps[:-1]
        if same.any():
            new_group = np.empty(len(ps), dtype=bool)
            new_group[0] = True
            np.logical_not(same, out=new_group[1:])
            idx = np.arange(len(ps), dtype=np.int64)
            occ_sorted = idx - np.maximum.accumulate(np.where(new_group, idx, 0))
            occ = np.empty(len(ps), np.int64)
            occ[srt] = occ_sorted
            repeated = occ > 0
            keys = keys.copy()
            keys[repeated] = _mix(keys[repeated] ^ (occ[repeated].astype(_U64) * _STEP))
        keys = keys.view(np.int64)
        parts.append((keys, owner))
    # interleave the orders per text: text-major, then order (a counting sort)
    counts = np.stack([np.bincount(o, minlength=n_texts) for _, o in parts])  # (orders, texts)
    text_start = np.zeros(n_texts, np.int64)
    np.cumsum(counts.sum(axis=0)[:-1], out=text_start[1:])
    size = int(counts.sum())
    keys_out = np.empty(size, np.int64)
    owner_out = np.empty(size, np.int64)
    order_out = np.empty(size, np.int8)
    before = np.zeros(n_texts, np.int64)  # features of lower orders per text
    for k, (keys, owner) in enumerate(parts, start=1):
        first = np.zeros(n_texts, np.int64)
        np.cumsum(counts[k - 1][:-1], out=first[1:])
        dest = text_start[owner] + before[owner] + (np.arange(len(keys)) - first[owner])
        keys_out[dest] = keys
        owner_out[dest] = owner
        order_out[dest] = k
        before += counts[k - 1]
    return keys_out, owner_out, order_out
