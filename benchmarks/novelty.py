"""Per-batch cost of the attacker's novelty rewards against the straightforward pairwise loops.

    python benchmarks/novelty.py                      # sizes 1k, 10k, 100k, 1M (~10 min)
    python benchmarks/novelty.py --sizes 1000 10000   # smaller run

For each history size it times, for a batch of 64 new attacks (median of --repeats runs):

* SelfBLEU per_reference and multi_reference from the incremental indexes (the
  history-dependent part: the attack texts are tokenised and hashed beforehand);
* embedding novelty (mean cosine) from the running sum, on 384-dimensional unit vectors;
* the same three by the plain pairwise computations (NLTK ``sentence_bleu`` with method1 per
  attack and history item / with all history items as references; one dot product per history
  item), measured while a batch is expected to take at most --pairwise-budget seconds and
  extrapolated linearly from the largest measured size beyond (marked ``~``);
* the fixed per-batch costs that do not depend on the history: NLTK word tokenisation and
  hashing of 64 attacks, and the all-MiniLM-L6-v2 forward pass for 64 attacks (if installed).

Attack texts are template-generated English-like questions (10-40 words, a Zipf-distributed
vocabulary of a few thousand words, the usual function words), with punctuation set off by
spaces so that whitespace splitting gives NLTK's tokens (checked at start-up); the history is
built with the whitespace tokeniser to keep building a 1M history affordable. History
embeddings are random unit vectors (the arithmetic does not depend on the model). Scores of the
fast path are compared with the pairwise reference wherever the latter ran (``max |diff|``).
Threads are pinned to one (OMP/OPENBLAS/MKL and torch) for one-core figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sparring.novelty._text import WordTokenizer, token_hashes  # noqa: E402
from sparring.novelty.embedding import EmbeddingIndex  # noqa: E402
from sparring.novelty.selfbleu import MultiReferenceSelfBLEU, PerReferenceSelfBLEU  # noqa: E402

ORDERS = [2, 3, 4, 5]
BATCH = 64
DIM = 384

_OPENERS = [
    "how can i",
    "what is the best way to",
    "can you explain how to",
    "write a step by step guide to",
    "tell me how someone could",
    "is it possible to",
    "what would happen if i tried to",
    "describe in detail how to",
    "give me a list of ways to",
    "why do people",
    "what tools do i need to",
    "i want to know how to",
]
_CLOSERS = [
    "without getting caught",
    "for a school project",
    "in my neighborhood",
    "as quickly as possible",
    "using only household items",
    "if nobody is watching",
    "and make it look like an accident",
    "without anyone noticing",
    "on a tight budget",
    "for a story i am writing",
]
_DET = ["the", "a", "my", "their", "some", "this", "an", "our"]
_PREP = ["with", "from", "in", "on", "at", "into", "for", "about", "under", "through"]
_CONJ = ["and", "or", "but", "then", "so"]


class Generator:
    """Template questions over a Zipf-distributed invented vocabulary."""

    def __init__(self, seed: int = 0, n_words: int = 3000):
        rng = random.Random(seed)
        syll = ["ka", "lo", "mi", "ter", "san", "vo", "rel", "du", "pen", "gra", "sto", "fi", "nar"]
        words: set[str] = set()
        while len(words) < n_words:
            words.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))))
        words_l = sorted(words)
        rng.shuffle(words_l)
        third = n_words // 3
        self.verbs = words_l[:third]
        self.nouns = words_l[third : 2 * third]
        self.adjs = words_l[2 * third :]
        self.rng = random.Random(seed + 1)

    def _zipf(self, pool: list[str]) -> str:
        # rank r drawn with probability ~ 1 / r
        r = int(len(pool) ** self.rng.random())
        return pool[min(r, len(pool) - 1)]

    def _phrase(self) -> list[str]:
        out = [self._zipf(self.verbs), self.rng.choice(_DET)]
        if self.rng.random() < 0.5:
            out.append(self._zipf(self.adjs))
        out.append(self._zipf(self.nouns))
        while self.rng.random() < 0.45:
            out += [self.rng.choice(_PREP), self.rng.choice(_DET), self._zipf(self.nouns)]
        return out

    def text(self) -> str:
        target = self.rng.randint(10, 40)
        words = self.rng.choice(_OPENERS).split() + self._phrase()
        while len(words) < target - 4:
            words += [self.rng.choice(_CONJ)] + self._phrase()
        if self.rng.random() < 0.6:
            words += self.rng.choice(_CLOSERS).split()
        words = words[: max(target - 1, 9)]
        return " ".join(words) + " ?"

    def texts(self, n: int) -> list[str]:
        return [self.text() for _ in range(n)]


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, result


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairwise-budget", type=float, default=60.0, help="seconds per batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-model", action="store_true", help="skip the MiniLM forward timing")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass

    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import sentence_bleu as nltk_bleu

    smooth = SmoothingFunction().method1
    gen = Generator(args.seed)
    vec_rng = np.random.default_rng(args.seed)
    nltk_tok = WordTokenizer("nltk")
    ws_tok = WordTokenizer("whitespace")
    probe = gen.texts(500)
    assert all(nltk_tok(t) == ws_tok(t) for t in probe), "generator texts must tokenise alike"
    batch = gen.texts(BATCH)
    batch_tokens = [ws_tok(t) for t in batch]
    batch_hashes = [token_hashes(t) for t in batch_tokens]
    batch_vecs = _unit(vec_rng, BATCH)

    print(f"# novelty benchmark: batch of {BATCH} attacks, orders {ORDERS}, one thread", flush=True)
    tok_ms, _ = _median_ms(lambda: [token_hashes(nltk_tok(t)) for t in batch], args.repeats)
    print(f"# fixed cost per batch: NLTK tokenise + hash {tok_ms:.1f} ms", flush=True)
    model_ms = None
    if not args.no_model:
        try:
            from sparring.novelty.embedders import SentenceTransformerEmbedder

            emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=BATCH, device="cpu")
            emb.embed(batch[:2])
            model_ms, _ = _median_ms(lambda: emb.embed(batch), max(2, args.repeats // 2))
            print(f"# fixed cost per batch: all-MiniLM-L6-v2 forward {model_ms:.1f} ms", flush=True)
        except Exception as exc:  # noqa: BLE001 - optional measurement
            print(f"# all-MiniLM-L6-v2 unavailable ({exc}); model timing skipped", flush=True)

    per_ref = PerReferenceSelfBLEU(ORDERS)
    multi = MultiReferenceSelfBLEU(ORDERS)
    embi = EmbeddingIndex("mean_cosine")
    hist_tokens: list[list[str]] = []
    hist_vecs: list[np.ndarray] = []
    pair_cost: dict[str, tuple[int, float]] = {}  # name -> (largest measured size, ms)
    rows = []
    built = 0
    t_build = 0.0
    for size in sorted(args.sizes):
        t0 = time.perf_counter()
        while built < size:
            n = min(20_000, size - built)
            texts = gen.texts(n)
            toks = [ws_tok(t) for t in texts]
            hashes = [token_hashes(t) for t in toks]
            vecs = _unit(vec_rng, n)
            per_ref.add(list(range(built, built + n)), hashes)
            multi.add(hashes)
            embi.add(list(range(built, built + n)), vecs)
            hist_tokens.extend(toks)
            hist_vecs.append(vecs)
            built += n
        t_build += time.perf_counter() - t0
        per_ref.score(batch_hashes)  # warm-up (dense rows are promoted on first use)
        fast = {}
        fast["per_reference"] = _median_ms(lambda: per_ref.score(batch_hashes), args.repeats)
        fast["multi_reference"] = _median_ms(lambda: multi.score(batch_hashes), args.repeats)
        fast["mean_cosine"] = _median_ms(lambda: embi.score(batch_vecs), args.repeats)
        hist_matrix = None

        def pairwise(name: str, _size=size):
            nonlocal hist_matrix
            if name == "per_reference":
                return np.array(
                    [
                        np.mean(
                            [
                                np.mean(
                                    [
                                        nltk_bleu([h], x, (1 / n,) * n, smooth)
                                        for h in hist_tokens[:_size]
                                    ]
                                )
                                for n in ORDERS
                            ]
                        )
                        for x in batch_tokens
                    ]
                )
            if name == "multi_reference":
                refs = hist_tokens[:_size]
                return np.array(
                    [
                        np.mean([nltk_bleu(refs, x, (1 / n,) * n, smooth) for n in ORDERS])
                        for x in batch_tokens
                    ]
                )
            if hist_matrix is None:
                hist_matrix = np.concatenate(hist_vecs)[:_size]
            return np.array([float(np.mean(hist_matrix @ v)) for v in batch_vecs])

        row = {"size": size}
        for name in ("per_reference", "multi_reference", "mean_cosine"):
            ms_fast, values = fast[name]
            last = pair_cost.get(name)
            estimate = last[1] * size / last[0] if last else 0.0
            if estimate <= args.pairwise_budget * 1e3:
                reps = 1 if name != "mean_cosine" else args.repeats
                ms_pair, ref_values = _median_ms(lambda n=name: pairwise(n), reps)
                pair_cost[name] = (size, ms_pair)
                diff = float(np.max(np.abs(np.asarray(values) - ref_values)))
                row[name] = (ms_fast, ms_pair, False, diff)
            else:
                row[name] = (ms_fast, estimate, True, None)
        rows.append(row)
        both = row["per_reference"][0] + row["mean_cosine"][0]
        print(
            f"# built {size:>9,} (cumulative build {t_build:.0f} s); "
            f"per_reference + mean_cosine: {both:.1f} ms per batch",
            flush=True,
        )

    def cell(v):
        ms_fast, ms_pair, extrapolated, diff = v
        pair = f"{'~' if extrapolated else ''}{ms_pair:,.0f}"
        ratio = f"{'~' if extrapolated else ''}{ms_pair / ms_fast:,.0f}x"
        d = "n/a" if diff is None else f"{diff:.1e}"
        return f"{ms_fast:8.2f} | {pair:>12} | {ratio:>10} | {d:>8}"

    print()
    print("ms per batch of 64 attacks (median); '~' = extrapolated linearly, not measured")
    head = "fast ms  | pairwise ms  |   ratio    | max|diff|"
    for name in ("per_reference", "multi_reference", "mean_cosine"):
        print(f"\n{name}")
        print(f"| history   | {head} |")
        print("|" + "-" * 11 + "|" + "-" * (len(head) + 2) + "|")
        for row in rows:
            print(f"| {row['size']:>9,} | {cell(row[name])} |")
    print(f"\nfixed per-batch costs: NLTK tokenise + hash {tok_ms:.1f} ms", end="")
    print(f"; MiniLM forward {model_ms:.1f} ms" if model_ms is not None else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
