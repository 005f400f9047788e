"""Per-batch cost of the attacker's novelty rewards against the straightforward pairwise loops.

    python benchmarks/novelty.py                      # sizes 1k, 10k, 100k, 1M (~7 min, 8 GiB)
    python benchmarks/novelty.py --sizes 1000 10000   # smaller run

For each history size it times, for a batch of 64 new attacks (median of --repeats runs):

* SelfBLEU per_reference and multi_reference from the incremental indexes (the
  history-dependent part: the attack texts are tokenised and hashed beforehand);
* embedding novelty (mean cosine) from the running sum, on 384-dimensional unit vectors;
* the same three by the plain pairwise computations (NLTK ``sentence_bleu`` with method1 per
  attack and history item / with all history items as references; one dot product per history
  item), measured while a batch is expected to take at most --pairwise-budget seconds and
  extrapolated linearly from the largest measured size beyond (marked ``~``); where the batch
  is too slow, the first few attacks are still checked against NLTK up to --spot-max items
  (4 attacks at 10k, 1 at 100k; marked ``*k``);
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
import resource  # noqa: E402
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
_OPENER_WORDS = [o.split() for o in _OPENERS]
_CLOSER_WORDS = [c.split() for c in _CLOSERS]
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
        self._random = self.rng.random

    def _zipf(self, pool: list[str]) -> str:
        # rank r drawn with probability ~ 1 / r
        return pool[min(int(len(pool) ** self._random()), len(pool) - 1)]

    def _pick(self, pool: list[str]) -> str:
        return pool[int(self._random() * len(pool))]

    def _phrase(self) -> list[str]:
        zipf, pick, random_ = self._zipf, self._pick, self._random
        out = [zipf(self.verbs), pick(_DET)]
        if random_() < 0.5:
            out.append(zipf(self.adjs))
        out.append(zipf(self.nouns))
        while random_() < 0.45:
            out += [pick(_PREP), pick(_DET), zipf(self.nouns)]
        return out

    def text(self) -> str:
        target = 10 + int(self._random() * 31)
        words = self._pick(_OPENER_WORDS) + self._phrase()
        if self._random() < 0.6:
            words += self._pick(_CLOSER_WORDS)
        while len(words) < target - 1:
            words.append(self._pick(_CONJ))
            words += self._phrase()
        words = words[: target - 1]  # 10 to 40 tokens with the question mark
        words.append("?")
        return " ".join(words)

    def texts(self, n: int) -> list[str]:
        return [self.text() for _ in range(n)]


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    """Median CPU time of this process (one thread: the one-core cost, robust to other load on
    the machine) in ms, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t = time.process_time()
        result = fn()
        times.append(time.process_time() - t)
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
    ap.add_argument(
        "--spot",
        type=int,
        default=4,
        help="attacks checked at 10k where the batch is too slow (1 per 100k beyond)",
    )
    ap.add_argument("--spot-max", type=int, default=100_000, help="largest history spot-checked")
    ap.add_argument(
        "--keep-tokens", type=int, default=100_000, help="history texts kept for the pairwise loops"
    )
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
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
            from sparring.embedders import SentenceTransformerEmbedder

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
    spot_checked: dict[tuple[str, int], int] = {}
    add_cpu = {"per_reference": 0.0, "multi_reference": 0.0, "mean_cosine": 0.0}
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
            t_add = time.process_time()
            per_ref.add(list(range(built, built + n)), hashes)
            t_mid = time.process_time()
            multi.add(hashes)
            t_end = time.process_time()
            embi.add(list(range(built, built + n)), vecs)
            add_cpu["per_reference"] += t_mid - t_add
            add_cpu["multi_reference"] += t_end - t_mid
            add_cpu["mean_cosine"] += time.process_time() - t_end
            if len(hist_tokens) < args.keep_tokens:  # for the pairwise reference only
                hist_tokens.extend(toks[: args.keep_tokens - len(hist_tokens)])
            hist_vecs.append(vecs)
            built += n
        t_build += time.perf_counter() - t0
        per_ref.score(batch_hashes)  # warm-up (dense rows are promoted on first use)
        fast = {}
        fast["per_reference"] = _median_ms(lambda: per_ref.score(batch_hashes), args.repeats)
        fast["multi_reference"] = _median_ms(lambda: multi.score(batch_hashes), args.repeats)
        fast["mean_cosine"] = _median_ms(lambda: embi.score(batch_vecs), args.repeats)

        def pairwise(name: str, _size=size, n_attacks=BATCH):
            attacks = batch_tokens[:n_attacks]
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
                        for x in attacks
                    ]
                )
            if name == "multi_reference":
                refs = hist_tokens[:_size]
                return np.array(
                    [
                        np.mean([nltk_bleu(refs, x, (1 / n,) * n, smooth) for n in ORDERS])
                        for x in attacks
                    ]
                )
            sums = np.zeros(BATCH)
            q = batch_vecs.astype(np.float64).T
            for chunk in hist_vecs:  # every (attack, history item) dot product, in float64
                sums += (chunk.astype(np.float64) @ q).sum(axis=0)
            return sums / _size

        row = {"size": size}
        for name in ("per_reference", "multi_reference", "mean_cosine"):
            ms_fast, values = fast[name]
            last = pair_cost.get(name)
            estimate = last[1] * size / last[0] if last else 0.0
            affordable = estimate <= args.pairwise_budget * 1e3
            if affordable and (name == "mean_cosine" or size <= len(hist_tokens)):
                reps = 1 if name != "mean_cosine" else args.repeats
                ms_pair, ref_values = _median_ms(lambda n=name: pairwise(n), reps)
                pair_cost[name] = (size, ms_pair)
                diff = float(np.max(np.abs(np.asarray(values) - ref_values)))
                row[name] = (ms_fast, ms_pair, False, diff)
            elif name != "mean_cosine" and size <= min(args.spot_max, len(hist_tokens)):
                # too slow for the whole batch: check the first few attacks only (marked *)
                n_check = max(1, min(args.spot, args.spot * 10_000 // size))
                ref_values = pairwise(name, n_attacks=n_check)
                diff = float(np.max(np.abs(np.asarray(values)[:n_check] - ref_values)))
                row[name] = (ms_fast, estimate, True, diff)
                spot_checked[(name, size)] = n_check
            else:
                row[name] = (ms_fast, estimate, True, None)
        rows.append(row)
        both = row["per_reference"][0] + row["mean_cosine"][0]
        print(
            f"# built {size:>9,} (cumulative build {t_build:.0f} s); "
            f"per_reference + mean_cosine: {both:.1f} ms per batch",
            flush=True,
        )

    def cell(v, spot=0):
        ms_fast, ms_pair, extrapolated, diff = v
        pair = f"{'~' if extrapolated else ''}{ms_pair:,.0f}"
        ratio = f"{'~' if extrapolated else ''}{ms_pair / ms_fast:,.0f}x"
        d = "n/a" if diff is None else f"{diff:.1e}" + (f"*{spot}" if spot else "")
        return f"{ms_fast:8.2f} | {pair:>12} | {ratio:>10} | {d:>8}"

    print()
    print(
        "CPU ms per batch of 64 attacks on one thread (median of repeats; the pairwise loops once)"
    )
    print("'~' = extrapolated linearly from the largest measured size, not measured;")
    print("'*k' = max|diff| over the first k attacks only (the pairwise batch is too slow)")
    head = "fast ms  | pairwise ms  |   ratio    | max|diff|"
    for name in ("per_reference", "multi_reference", "mean_cosine"):
        print(f"\n{name}")
        print(f"| history   | {head} |")
        print("|" + "-" * 11 + "|" + "-" * (len(head) + 2) + "|")
        for row in rows:
            spot = spot_checked.get((name, row["size"]), 0)
            print(f"| {row['size']:>9,} | {cell(row[name], spot)} |")
    print(f"\nfixed per-batch costs: NLTK tokenise + hash {tok_ms:.1f} ms", end="")
    print(f"; MiniLM forward {model_ms:.1f} ms" if model_ms is not None else "")
    per_attack = ", ".join(f"{k} {v / max(built, 1) * 1e6:.0f} us" for k, v in add_cpu.items())
    print(f"add(), CPU per attack amortised over the {built:,}-item build: {per_attack}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"history build (indexes of both SelfBLEU kinds + embedding sum): {t_build:.0f} s wall; ",
        end="",
    )
    print(f"peak memory {peak:.1f} GiB; total {time.perf_counter() - t_start:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
