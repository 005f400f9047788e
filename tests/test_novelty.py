"""The attacker's novelty rewards: exactness against NLTK and pairwise loops, history policies,
persistence, the scorer's interface and its errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu
from pydantic import ValidationError

from sparring.errors import ConfigError, DataError
from sparring.novelty import (
    HashingEmbedder,
    MultiReferenceSelfBLEU,
    NoveltySpec,
    PerReferenceSelfBLEU,
    build_novelty,
    diversity,
    reference,
)
from sparring.novelty._text import WordTokenizer, token_hashes
from sparring.novelty.history import History
from sparring.novelty.specs import HistorySpec

SMOOTH = SmoothingFunction().method1
VOCAB = ["a", "b", "c", "d", "e", "f", "the", "?"]
sentences = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=12)
corpora = st.lists(sentences, min_size=1, max_size=25)
order_sets = st.sampled_from([[2, 3, 4, 5], [1], [1, 2], [4], [1, 3, 8], [2, 5]])
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# per-reference index settings that force each code path: dense rows, long items, the
# (length, m1)-only table, everything dense and long
PATHS = [
    {},
    {"DENSE_MIN_DF": 2, "DENSE_FRACTION": 4, "DENSE_MAX_ROWS": 5},
    {"LONG": 5},
    {"TABLE_MAX": 1},
    {"LONG": 4, "DENSE_MIN_DF": 1, "DENSE_FRACTION": 1000, "TABLE_MAX": 1},
]


def nltk_bleu(refs, hyp, n):
    return nltk_sentence_bleu(refs, hyp, weights=(1.0 / n,) * n, smoothing_function=SMOOTH)


def per_ref_index(orders, path=None):
    index = PerReferenceSelfBLEU(orders)
    for name, value in (path or {}).items():
        setattr(index, name, value)
    return index


def hashed(token_lists):
    return [token_hashes(t) for t in token_lists]


def random_words(rng, lo=0, hi=14, vocab=VOCAB):
    return [rng.choice(vocab) for _ in range(rng.randint(lo, hi))]


# ---------------------------------------------------------------------- BLEU definitions
@FAST
@given(refs=corpora, hyp=sentences, n=st.integers(1, 6))
def test_reference_bleu_equals_nltk(refs, hyp, n):
    assert reference.sentence_bleu(refs, hyp, n) == pytest.approx(
        nltk_bleu(refs, hyp, n), abs=1e-12
    )
    one = refs[:1]
    assert reference.sentence_bleu(one, hyp, n) == pytest.approx(nltk_bleu(one, hyp, n), abs=1e-12)


def test_bleu_edge_cases_follow_nltk():
    # no shared unigram -> 0, even with smoothing
    assert (
        reference.sentence_bleu([["x", "y"]], ["a", "b"], 2)
        == 0.0
        == nltk_bleu([["x", "y"]], ["a", "b"], 2)
    )
    # empty hypothesis -> 0
    assert reference.sentence_bleu([["a"]], [], 3) == 0.0
    # shorter than n: the missing orders count 0.1 / 1
    want = nltk_bleu([["a", "b", "c"]], ["a"], 4)
    assert want > 0
    assert reference.sentence_bleu([["a", "b", "c"]], ["a"], 4) == pytest.approx(want, abs=1e-15)
    # identical sentence -> 1
    s = ["how", "do", "i", "do", "it", "?"]
    assert reference.sentence_bleu([s], s, 5) == pytest.approx(1.0)
    # repeated words are clipped
    assert reference.sentence_bleu([["the", "cat"]], ["the"] * 4, 1) == pytest.approx(
        nltk_bleu([["the", "cat"]], ["the"] * 4, 1)
    )


@FAST
@given(
    history=corpora,
    queries=st.lists(sentences, min_size=1, max_size=6),
    orders=order_sets,
    path=st.sampled_from(PATHS),
)
def test_per_reference_index_equals_pairwise(history, queries, orders, path):
    index = per_ref_index(orders, path)
    index.add(list(range(len(history))), hashed(history))
    got = index.score(hashed(queries))
    want = [reference.selfbleu_per_reference(q, history, orders) for q in queries]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@FAST
@given(history=corpora, queries=st.lists(sentences, min_size=1, max_size=6), orders=order_sets)
def test_multi_reference_index_equals_nltk(history, queries, orders):
    index = MultiReferenceSelfBLEU(orders)
    index.add(hashed(history))
    got = index.score(hashed(queries))
    want = [np.mean([nltk_bleu(history, q, n) for n in orders]) for q in queries]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_per_reference_matches_nltk_on_a_larger_random_corpus():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)] + ["the", "a", "to", "?"]
    history = [random_words(rng, 0, 30, vocab) for _ in range(60)]
    queries = [random_words(rng, 0, 30, vocab) for _ in range(6)] + [history[5], [], ["the"]]
    want = [
        np.mean([np.mean([nltk_bleu([h], q, n) for h in history]) for n in (2, 3, 4, 5)])
        for q in queries
    ]
    for path in PATHS:
        index = per_ref_index([2, 3, 4, 5], path)
        index.add(list(range(len(history))), hashed(history))
        np.testing.assert_allclose(index.score(hashed(queries)), want, rtol=0, atol=1e-9)


def test_long_attacks_and_long_history_items():
    rng = random.Random(3)
    history = [random_words(rng, 250, 300) for _ in range(3)] + [
        random_words(rng) for _ in range(20)
    ]
    queries = [random_words(rng, 260, 320), random_words(rng, 1, 5), history[0]]
    index = per_ref_index([2, 3, 4, 5])
    index.add(list(range(len(history))), hashed(history))
    want = [reference.selfbleu_per_reference(q, history) for q in queries]
    np.testing.assert_allclose(index.score(hashed(queries)), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_per_reference_removal_and_compaction(path):
    rng = random.Random(11)
    index = per_ref_index([1, 2, 4], path)
    index.COMPACT_MIN_DEAD = 3
    live: dict[int, list[str]] = {}
    next_id = 0
    for _ in range(12):
        new = [random_words(rng) for _ in range(5)]
        index.add(list(range(next_id, next_id + 5)), hashed(new))
        live.update(zip(range(next_id, next_id + 5), new, strict=True))
        next_id += 5
        gone = rng.sample(sorted(live), 3)
        index.remove(sorted(gone))
        for i in gone:
            del live[i]
        queries = [random_words(rng) for _ in range(4)]
        want = [
            reference.selfbleu_per_reference(q, list(live.values()), [1, 2, 4]) for q in queries
        ]
        np.testing.assert_allclose(index.score(hashed(queries)), want, rtol=0, atol=1e-12)
    assert index.n_slots < next_id  # compaction happened
    with pytest.raises(KeyError):
        index.remove([gone[0]])


def test_empty_history_scores_zero():
    for index in (PerReferenceSelfBLEU([2, 3]), MultiReferenceSelfBLEU([2, 3])):
        assert index.score(hashed([["a", "b"], []])).tolist() == [0.0, 0.0]


# ---------------------------------------------------------------------- tokeniser
def test_tokenizer_is_nltk_word_level_and_lowercase_is_optional():
    tok = WordTokenizer("nltk")
    assert tok("How can I do it? Don't.") == ["How", "can", "I", "do", "it", "?", "Do", "n't", "."]
    assert WordTokenizer("nltk", lowercase=True)("How?") == ["how", "?"]
    assert WordTokenizer("whitespace")("a  b\tc?") == ["a", "b", "c?"]
    assert token_hashes(["a"])[0] == token_hashes(["a", "b"])[0]  # stable hashes


# ---------------------------------------------------------------------- the scorer
def hashing_spec(**kw) -> NoveltySpec:
    base = {"bleu_weight": 5.0, "embed_weight": 1.0, "embedder": {"type": "hashing", "dim": 64}}
    base.update(kw)
    return NoveltySpec(**base)


def make_texts(rng, n):
    words = [
        "how",
        "can",
        "i",
        "make",
        "a",
        "bomb",
        "steal",
        "car",
        "hack",
        "the",
        "bank",
        "?",
        ",",
        "quickly",
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 15))) for _ in range(n)]


def mirror_check(spec: NoveltySpec, steps=7, seed=0, batch=(1, 6)):
    """Run the scorer and an independent pairwise mirror of its history side by side."""
    rng = random.Random(seed)
    emb = HashingEmbedder(64)
    tok = WordTokenizer(spec.tokenizer, spec.lowercase)
    scorer = build_novelty(spec, embedder=emb)
    mirror = History(spec.history)
    live: dict[int, str] = {}
    for step in range(steps):
        texts = make_texts(rng, rng.randint(*batch))
        got = scorer.score(texts)
        hist = [live[i] for i in sorted(live)]
        fn = (
            reference.selfbleu_per_reference
            if spec.selfbleu == "per_reference"
            else reference.selfbleu_multi_reference
        )
        want_b = [fn(tok(t), [tok(h) for h in hist], spec.orders) for t in texts]
        hv = emb.embed(hist) if hist else np.zeros((0, 64), np.float32)
        if spec.embedding == "mean_cosine":
            want_c = [reference.mean_cosine(v, hv) for v in emb.embed(texts)]
        else:
            want_c = [
                reference.knn_cosine(v, hv[-spec.knn_max_items :], spec.knn_k)
                for v in emb.embed(texts)
            ]
        np.testing.assert_allclose(
            got["selfbleu"], want_b, rtol=0, atol=1e-12, err_msg=f"step {step}"
        )
        np.testing.assert_allclose(got["cosine"], want_c, rtol=0, atol=1e-6, err_msg=f"step {step}")
        if step == 0:
            assert not got["selfbleu"].any() and not got["cosine"].any()
        scorer.add(texts)
        adm = mirror.admit(len(texts))
        for i in adm.leaving:
            del live[i]
        for i, p in zip(adm.entering, adm.positions, strict=True):
            live[i] = texts[p]
        assert len(scorer) == len(live)
    return scorer


@pytest.mark.parametrize("selfbleu", ["per_reference", "multi_reference"])
@pytest.mark.parametrize(
    "history",
    [
        {"policy": "unbounded"},
        {"policy": "window", "size": 13},
        {"policy": "reservoir", "size": 11, "seed": 4},
    ],
)
@pytest.mark.parametrize("embedding", ["mean_cosine", "knn"])
def test_scorer_equals_pairwise_reference(selfbleu, history, embedding):
    spec = hashing_spec(
        selfbleu=selfbleu, history=history, embedding=embedding, knn_k=3, knn_max_items=7
    )
    mirror_check(spec)


def test_score_is_against_the_history_before_the_batch():
    scorer = build_novelty(hashing_spec(), embedder=HashingEmbedder(64))
    first = scorer.score(["how to make a bomb", "how to make a bomb"])
    assert first["selfbleu"].tolist() == [0.0, 0.0] and first["cosine"].tolist() == [0.0, 0.0]
    scorer.add(["how to make a bomb", "how to make a bomb"])
    again = scorer.score(["how to make a bomb"])
    assert again["selfbleu"][0] == pytest.approx(1.0) and again["cosine"][0] == pytest.approx(
        1.0, abs=1e-6
    )
    assert scorer.penalty(again)[0] == pytest.approx(5.0 + 1.0, abs=1e-5)
    assert len(scorer) == 2


def test_empty_strings_are_valid_attacks():
    scorer = build_novelty(hashing_spec(), embedder=HashingEmbedder(64))
    scorer.add(["", "a b c"])
    out = scorer.score(["", "a b"])
    assert out["selfbleu"][0] == 0.0
    assert out["selfbleu"][1] > 0
    assert np.isfinite(out["cosine"]).all()
    assert scorer.score([])["selfbleu"].shape == (0,)


class ExplodingEmbedder:
    dim = 8

    def embed(self, texts):
        raise AssertionError("the embedder must not be used")


def test_zero_weight_terms_are_not_computed_nor_loaded():
    spec = NoveltySpec(
        bleu_weight=1.0,
        embed_weight=0.0,
        embedder={"type": "sentence-transformers", "model": "/no/such/model"},
    )
    scorer = build_novelty(spec)  # would raise ConfigError if the embedder were built
    scorer.add(["a b c"])
    out = scorer.score(["a b c"])
    assert out["cosine"].tolist() == [0.0] and out["selfbleu"][0] > 0
    scorer = build_novelty(spec, embedder=ExplodingEmbedder())
    scorer.add(["a b"])
    scorer.score(["a b"])
    only_embed = build_novelty(hashing_spec(bleu_weight=0.0), embedder=HashingEmbedder(64))
    only_embed.add(["a b c"])
    out = only_embed.score(["a b c"])
    assert out["selfbleu"].tolist() == [0.0] and out["cosine"][0] > 0.99
    assert only_embed.bleu is None
    both = build_novelty(
        hashing_spec(bleu_weight=0.0, embed_weight=0.0),
        embedder=HashingEmbedder(64),
        compute_all=True,
    )
    both.add(["a b c"])
    out = both.score(["a b c"])
    assert out["selfbleu"][0] > 0 and out["cosine"][0] > 0.99
    assert both.penalty(out).tolist() == [0.0]


def test_unknown_model_is_a_config_error_when_first_needed():
    scorer = build_novelty(NoveltySpec(embed_weight=1.0, embedder={"model": "no-such-hub/model"}))
    with pytest.raises(ConfigError, match="never downloaded"):
        scorer.add(["a"])


def test_bad_inputs_raise_data_errors():
    scorer = build_novelty(hashing_spec(), embedder=HashingEmbedder(64))
    with pytest.raises(DataError, match=r"attacks\[1\] must be a string"):
        scorer.score(["ok", 3])
    with pytest.raises(DataError, match="not a single str"):
        scorer.add("a single string")
    with pytest.raises(DataError):
        scorer.add([None])
    with pytest.raises(DataError, match="lack the key"):
        scorer.penalty({"selfbleu": np.zeros(1)})
    with pytest.raises(ConfigError):
        build_novelty({"bleu_weight": 1.0})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"bleu_weight": -1.0},
        {"orders": []},
        {"orders": [0, 2]},
        {"orders": [9]},
        {"orders": [2, 2]},
        {"history": {"policy": "window"}},
        {"history": {"policy": "reservoir", "size": 0}},
        {"history": {"policy": "unbounded", "size": 5}},
        {"selfbleu": "multi_reference", "selfbleu_sample": 10},
        {"knn_k": 0},
        {"nonsense": 1},
        {"embedder": {"type": "hashing", "dims": 3}},
        {"embed_weight": float("inf")},
    ],
)
def test_spec_validation(bad):
    with pytest.raises(ValidationError):
        NoveltySpec(**bad)


def test_spec_defaults_match_the_interface():
    spec = NoveltySpec()
    assert spec.selfbleu == "per_reference" and spec.orders == [2, 3, 4, 5]
    assert (
        spec.embedder.type == "sentence-transformers" and spec.embedder.model == "all-MiniLM-L6-v2"
    )
    assert (
        spec.history.policy == "unbounded" and spec.embedding == "mean_cosine" and spec.knn_k == 10
    )
    assert NoveltySpec(orders=[5, 2]).orders == [2, 5]


# ---------------------------------------------------------------------- history policies
def test_window_keeps_the_last_items():
    h = History(HistorySpec(policy="window", size=3))
    a = h.admit(2)
    assert a.entering == [0, 1] and a.leaving == []
    b = h.admit(5)  # ids 2..6: only 4, 5, 6 stay; 0 and 1 leave
    assert b.entering == [4, 5, 6] and b.positions == [2, 3, 4] and b.leaving == [0, 1]


def test_reservoir_does_not_depend_on_how_batches_are_split():
    one = History(HistorySpec(policy="reservoir", size=10, seed=1))
    one.admit(100)
    many = History(HistorySpec(policy="reservoir", size=10, seed=1))
    for n in (1, 7, 30, 2, 60):
        many.admit(n)
    assert one.slots == many.slots
    other = History(HistorySpec(policy="reservoir", size=10, seed=2))
    other.admit(100)
    assert other.slots != one.slots


def test_reservoir_is_roughly_uniform():
    counts = np.zeros(40)
    for seed in range(300):
        h = History(HistorySpec(policy="reservoir", size=10, seed=seed))
        h.admit(40)
        counts[h.slots] += 1
    # each of 40 items is kept with probability 1/4: 75 expected, sd about 7.5
    assert counts.min() > 40 and counts.max() < 115


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize("selfbleu", ["per_reference", "multi_reference"])
@pytest.mark.parametrize(
    "history",
    [
        {"policy": "unbounded"},
        {"policy": "window", "size": 9},
        {"policy": "reservoir", "size": 8, "seed": 1},
    ],
)
@pytest.mark.parametrize("embedding", ["mean_cosine", "knn"])
def test_save_load_resumes_bit_for_bit(tmp_path, selfbleu, history, embedding):
    spec = hashing_spec(selfbleu=selfbleu, history=history, embedding=embedding, knn_k=2)
    rng = random.Random(5)
    batches = [make_texts(rng, rng.randint(1, 6)) for _ in range(14)]
    emb = HashingEmbedder(64)
    straight = build_novelty(spec, embedder=emb)
    for texts in batches[:7]:
        straight.score(texts)
        straight.add(texts)
    straight.save(tmp_path / "state")
    resumed = build_novelty(spec, embedder=emb)
    resumed.load(tmp_path / "state")
    for texts in batches[7:]:
        a, b = straight.score(texts), resumed.score(texts)
        assert a["selfbleu"].tolist() == b["selfbleu"].tolist()
        assert a["cosine"].tolist() == b["cosine"].tolist()
        straight.add(texts)
        resumed.add(texts)
    assert len(straight) == len(resumed)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "state").iterdir())


def test_save_load_with_compaction_and_sample(tmp_path):
    spec = hashing_spec(history={"policy": "window", "size": 6}, selfbleu_sample=4)
    rng = random.Random(9)
    batches = [make_texts(rng, 5) for _ in range(12)]
    straight = build_novelty(spec, embedder=HashingEmbedder(64))
    straight.bleu.COMPACT_MIN_DEAD = 2
    for texts in batches[:6]:
        straight.add(texts)
    straight.save(tmp_path)
    resumed = build_novelty(spec, embedder=HashingEmbedder(64))
    resumed.load(tmp_path)
    resumed.bleu.COMPACT_MIN_DEAD = 2
    for texts in batches[6:]:
        assert (
            straight.score(texts)["selfbleu"].tolist() == resumed.score(texts)["selfbleu"].tolist()
        )
        straight.add(texts)
        resumed.add(texts)


def test_load_refuses_a_different_state_shaping_spec(tmp_path):
    scorer = build_novelty(hashing_spec(), embedder=HashingEmbedder(64))
    scorer.add(["a b c"])
    scorer.save(tmp_path)
    other = build_novelty(hashing_spec(orders=[2, 3]), embedder=HashingEmbedder(64))
    with pytest.raises(ConfigError, match="orders"):
        other.load(tmp_path)
    other_model = build_novelty(hashing_spec(embedder={"type": "hashing", "dim": 32}))
    with pytest.raises(ConfigError, match="embedder"):
        other_model.load(tmp_path)
    reweighted = build_novelty(hashing_spec(bleu_weight=1.0), embedder=HashingEmbedder(64))
    reweighted.load(tmp_path)  # weights do not shape the state
    assert len(reweighted) == 1


def test_load_rebuilds_a_term_that_was_off_when_saved(tmp_path):
    off = build_novelty(hashing_spec(embed_weight=0.0), embedder=HashingEmbedder(64))
    off.add(["a b c", "d e"])
    off.save(tmp_path)
    on = build_novelty(hashing_spec(), embedder=HashingEmbedder(64))
    on.load(tmp_path)
    v = HashingEmbedder(64).embed(["a b c", "d e"]).astype(np.float64)
    assert on.score(["a b c"])["cosine"][0] == pytest.approx((1.0 + v[0] @ v[1]) / 2, abs=1e-6)


# ---------------------------------------------------------------------- sampling
def test_selfbleu_sample_scores_against_the_sampled_items():
    spec = hashing_spec(embed_weight=0.0, selfbleu_sample=5, selfbleu_sample_seed=3)
    scorer = build_novelty(spec)
    rng = random.Random(2)
    seen: dict[int, str] = {}
    for _ in range(6):
        texts = make_texts(rng, 4)
        start = scorer.history.next_id
        scorer.add(texts)
        seen.update(zip(range(start, start + 4), texts, strict=True))
    sampled = [seen[i] for i in sorted(i for i in scorer.sample.slots if i >= 0)]
    assert len(sampled) == 5
    tok = WordTokenizer()
    queries = make_texts(rng, 3)
    want = [reference.selfbleu_per_reference(tok(q), [tok(s) for s in sampled]) for q in queries]
    np.testing.assert_allclose(scorer.score(queries)["selfbleu"], want, atol=1e-12)
    exact = build_novelty(hashing_spec(embed_weight=0.0, selfbleu_sample=100))
    plain = build_novelty(hashing_spec(embed_weight=0.0))
    for s in (exact, plain):
        s.add(list(seen.values()))
    assert exact.score(queries)["selfbleu"].tolist() == pytest.approx(
        plain.score(queries)["selfbleu"].tolist(), abs=1e-12
    )


# ---------------------------------------------------------------------- embeddings
def test_hashing_embedder_rows_are_unit_and_deterministic():
    emb = HashingEmbedder(32)
    v = emb.embed(["how to make a bomb", "", "How to make a BOMB"])
    assert v.dtype == np.float32 and v.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(
        v, HashingEmbedder(32).embed(["how to make a bomb", "", "How to make a BOMB"])
    )
    assert float(v[0] @ v[2]) == pytest.approx(1.0, abs=1e-6)  # lowercased
    with pytest.raises(DataError):
        emb.embed([1])


def test_knn_with_k_one_is_the_max_similarity():
    spec = hashing_spec(bleu_weight=0.0, embedding="knn", knn_k=1)
    emb = HashingEmbedder(64)
    scorer = build_novelty(spec, embedder=emb)
    hist = ["alpha beta", "gamma delta", "alpha gamma"]
    scorer.add(hist)
    q = ["alpha beta gamma"]
    want = float(np.max(emb.embed(hist) @ emb.embed(q)[0]))
    assert scorer.score(q)["cosine"][0] == pytest.approx(want, abs=1e-6)


# ---------------------------------------------------------------------- corpus diversity
@FAST
@given(texts=st.lists(st.lists(st.sampled_from(VOCAB), max_size=10).map(" ".join), max_size=12))
def test_diversity_equals_the_pairwise_reference(texts):
    emb = HashingEmbedder(32)
    tok = WordTokenizer()
    got = diversity(texts, emb)
    want = reference.diversity(
        [tok(t) for t in texts], emb.embed(texts) if texts else np.zeros((0, 32))
    )
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_diversity_never_compares_a_text_with_itself():
    d = diversity(["a b c d", "w x y z"])
    assert d["selfbleu"] == 0.0 and d["bleu_diversity"] == 1.0
    same = diversity(["a b c d e f", "a b c d e f"])
    assert same["selfbleu"] == pytest.approx(1.0)
    assert diversity(["only one"])["selfbleu"] == 0.0


# ---------------------------------------------------------------------- index internals
def test_posting_and_count_runs_match_a_plain_dict():
    from sparring.novelty._runs import CountRuns, PostingRuns

    rng = np.random.default_rng(0)
    postings, counts = PostingRuns(), CountRuns()
    plain: dict[int, list[int]] = {}
    plain_counts: dict[int, int] = {}
    slot = 0
    for step in range(30):
        n = int(rng.integers(1, 40))
        keys = rng.integers(-20, 20, size=n)
        slots = np.arange(slot, slot + n, dtype=np.int32)
        slot += n
        postings.add(keys, slots)
        for k, s in zip(keys.tolist(), slots.tolist(), strict=True):
            plain.setdefault(k, []).append(s)
        sign = -1 if step % 5 == 4 else 1
        if sign < 0:  # remove keys that are present
            keys = np.array([k for k, c in plain_counts.items() if c > 0][:5], np.int64)
        counts.add(keys, sign)
        for k in keys.tolist():
            plain_counts[k] = plain_counts.get(k, 0) + sign
    assert len(postings.runs) < 10  # merged as it grew
    query = np.arange(-25, 25, dtype=np.int64)
    looked = postings.lookup(query)
    for i, k in enumerate(query.tolist()):
        got = postings.gather(looked, np.array([i]))
        assert got.tolist() == plain.get(k, [])
    np.testing.assert_array_equal(
        counts.lookup(query), [plain_counts.get(k, 0) for k in query.tolist()]
    )


def test_load_errors_are_checkpoint_errors(tmp_path):
    from sparring.errors import CheckpointError

    scorer = build_novelty(hashing_spec(), embedder=HashingEmbedder(64))
    with pytest.raises(CheckpointError, match="cannot read"):
        scorer.load(tmp_path / "missing")
    scorer.add(["a b"])
    scorer.save(tmp_path)
    (tmp_path / "novelty_bleu_alive.npy").unlink()
    with pytest.raises(CheckpointError, match="novelty_bleu_alive"):
        build_novelty(hashing_spec(), embedder=HashingEmbedder(64)).load(tmp_path)


def test_an_embedder_of_raw_vectors_still_gives_cosines():
    """A custom embedder that returns unnormalised vectors gets cosines, not dot products: the
    scorer normalises at its boundary (and rejects an all-zero vector, which has no direction)."""

    class Scaled:
        def __init__(self):
            self.inner = HashingEmbedder(64)

        def embed(self, texts):
            v = np.asarray(self.inner.embed(texts), dtype=np.float64)
            return v * np.arange(3, 3 + len(texts))[:, None]  # lengths 3, 4, 5, ...

    history = ["how do I pick a lock", "tell me how to make a fake id"]
    batch = ["how do I pick a lock quickly", "write a poem"]
    plain = build_novelty(hashing_spec(bleu_weight=0.0), embedder=HashingEmbedder(64))
    scaled = build_novelty(hashing_spec(bleu_weight=0.0), embedder=Scaled())
    for s in (plain, scaled):
        s.add(history)
    expected = plain.score(batch)["cosine"]
    got = scaled.score(batch)["cosine"]
    assert np.allclose(got, expected, atol=1e-6)
    assert np.all(got <= 1.0 + 1e-6)

    class Zero:
        def embed(self, texts):
            return np.zeros((len(texts), 4))

    with pytest.raises(DataError, match="all-zero"):
        build_novelty(hashing_spec(bleu_weight=0.0), embedder=Zero()).add(["x"])
