"""Paired bootstrap intervals over prompts, judge agreement (Cohen's kappa), refusal rates in
an evaluation, and ``sparring eval --compare``."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from sparring.cli import main
from sparring.evaluation import metrics as M
from sparring.evaluation.compare import compare_evals, read_eval_samples
from sparring.evaluation.evaluate import _agreement, evaluate_run
from sparring.evaluation.tables import eval_tables
from sparring.judges.refusal import RefusalDetector
from sparring.runs import read_jsonl
from test_eval_run import HELDOUT, make_run

# -- paired bootstrap ----------------------------------------------------------------------------


def _answers(k: int, per: int, seed: int = 0):
    """k prompts with ``per`` 0/1 answers each, before and after (after a bit less often 1)."""
    rng = np.random.default_rng(seed)
    groups = [f"prompt {i}" for i in range(k) for _ in range(per)]
    before = rng.integers(0, 2, size=k * per).astype(float)
    after = np.where(rng.random(k * per) < 0.3, 0.0, before)
    return list(before), list(after), groups


def test_identical_before_and_after_give_zero_and_a_zero_interval():
    b, _, g = _answers(20, 3)
    got = M.paired_bootstrap(b, b, g)
    assert (got["diff"], got["low"], got["high"]) == (0.0, 0.0, 0.0)
    assert got["resamples"] == 10_000 and got["seed"] == 0 and got["n_prompts"] == 20


def test_a_constant_shift_gives_that_shift_and_a_point_interval():
    b, _, g = _answers(15, 2)
    got = M.paired_bootstrap(b, [x + 1 for x in b], g)
    assert (got["diff"], got["low"], got["high"]) == (1.0, 1.0, 1.0)


def test_one_prompt_collapses_the_interval_to_the_point():
    got = M.paired_bootstrap([0, 1, 1, 0], [1, 1, 1, 1], ["p"] * 4, resamples=50)
    assert got["diff"] == 0.5 and got["low"] == got["high"] == 0.5 and got["n_prompts"] == 1


def test_prompts_not_answers_are_resampled():
    # prompt a: every answer improves by 1; prompt b: none does. Resampling the two prompts
    # gives a mean difference of 0, 0.5 or 1 (a wide interval); resampling the 100 answers
    # would give a narrow one around 0.5.
    g = ["a"] * 50 + ["b"] * 50
    got = M.paired_bootstrap([0.0] * 100, [1.0] * 50 + [0.0] * 50, g, seed=3)
    assert got["diff"] == 0.5 and (got["low"], got["high"]) == (0.0, 1.0)


def test_interval_by_hand_for_two_prompts():
    # 4 equally likely resamples of 2 prompts: diffs 0, .5, .5, 1 -> percentiles over many
    # resamples approach the quantiles of that distribution
    got = M.paired_bootstrap([0, 0], [1, 0], ["a", "b"], resamples=20_000, seed=1)
    assert got["low"] == 0.0 and got["high"] == 1.0 and got["diff"] == 0.5


def test_interval_is_the_2_5_and_97_5_percentiles():
    # 40 prompts, 20 improve by 1 and 20 do not: a resample's difference is Binomial(40, 1/2)
    # / 40, whose 2.5% and 97.5% quantiles are 14/40 and 26/40 (P(X <= 13) = 0.019,
    # P(X <= 14) = 0.040); the 5% and 95% ones would be 15/40 and 25/40
    got = M.paired_bootstrap([0.0] * 40, [1.0] * 20 + [0.0] * 20, list(range(40)))
    assert got["diff"] == 0.5 and (got["low"], got["high"]) == (14 / 40, 26 / 40)


def test_interval_is_reproducible_and_independent_of_prompt_order():
    b, a, g = _answers(30, 2, seed=5)
    first = M.paired_bootstrap(b, a, g, seed=7)
    assert M.paired_bootstrap(b, a, g, seed=7) == first
    perm = np.random.default_rng(1).permutation(len(g))
    shuffled = M.paired_bootstrap(
        [b[i] for i in perm], [a[i] for i in perm], [g[i] for i in perm], seed=7
    )
    assert shuffled == first
    assert first["low"] < first["diff"] < first["high"]
    # the seed is used: with few resamples, two seeds give two intervals
    few = [M.paired_bootstrap(b, a, g, seed=s, resamples=100) for s in (7, 8)]
    assert (few[0]["low"], few[0]["high"]) != (few[1]["low"], few[1]["high"])


def test_a_custom_statistic_agrees_with_the_mean_path():
    b, a, g = _answers(12, 3, seed=2)
    fast = M.paired_bootstrap(b, a, g, resamples=500, seed=4)
    slow = M.paired_bootstrap(b, a, g, resamples=500, seed=4, stat=np.mean)
    for key in ("diff", "low", "high"):
        assert slow[key] == pytest.approx(fast[key])


def test_bad_bootstrap_input_is_refused():
    with pytest.raises(ValueError, match="one length"):
        M.paired_bootstrap([1, 0], [1], ["a", "b"])
    with pytest.raises(ValueError, match="at least one answer"):
        M.paired_bootstrap([], [], [])
    with pytest.raises(ValueError, match="finite"):
        M.paired_bootstrap([float("nan")], [1.0], ["a"])
    with pytest.raises(ValueError, match="resamples"):
        M.paired_bootstrap([1.0], [1.0], ["a"], resamples=0)


# -- Cohen's kappa -------------------------------------------------------------------------------


def _from_table(table):
    """Two raters' labels from a 2x2 table [[yes-yes, yes-no], [no-yes, no-no]]."""
    (yy, yn), (ny, nn) = table
    a = [1] * (yy + yn) + [0] * (ny + nn)
    b = [1] * yy + [0] * yn + [1] * ny + [0] * nn
    return a, b


def test_kappa_of_the_wikipedia_example():
    # 50 proposals: both yes 20, A yes B no 5, A no B yes 10, both no 15 -> kappa 0.4
    got = M.cohen_kappa(*_from_table([[20, 5], [10, 15]]))
    assert got["kappa"] == pytest.approx(0.4) and got["agreement"] == pytest.approx(0.7)
    assert got["n"] == 50


def test_kappa_by_hand_in_other_cases():
    # p_o = 0, p_e = 0.5 -> -1
    assert M.cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1])["kappa"] == pytest.approx(-1.0)
    # one constant rater: p_o = 0.5, p_e = 1 * 0.5 = 0.5 -> 0
    assert M.cohen_kappa([1, 1, 1, 1], [1, 1, 0, 0])["kappa"] == pytest.approx(0.0)
    # NaN rows are left out: the rest agree perfectly and vary -> 1
    got = M.cohen_kappa([1, 0, float("nan"), 1], [1, 0, 0, float("nan")])
    assert got == {"kappa": pytest.approx(1.0), "agreement": 1.0, "n": 2}


def test_kappa_degenerate_cases():
    # both raters give every row the same label: p_e = 1, kappa is undefined (None)
    assert M.cohen_kappa([1, 1, 1], [1, 1, 1]) == {"kappa": None, "agreement": 1.0, "n": 3}
    assert M.cohen_kappa([float("nan")], [1]) == {"kappa": None, "agreement": None, "n": 0}
    with pytest.raises(ValueError, match="0 or 1"):
        M.cohen_kappa([0.3], [1])
    with pytest.raises(ValueError, match="equally long"):
        M.cohen_kappa([1, 0], [1])


def test_unsafe_labels_and_agreement_of_an_evaluation_set():
    assert [
        (None if math.isnan(x) else x) for x in M.unsafe_labels([0.2, 0.5, float("nan"), None])
    ] == [1.0, 0.0, None, None]
    # judge unsafe 1 0 1 0; refusal unsafe (not refused) 1 0 0 0: p_o .75, p_e .5 -> kappa .5
    got = _agreement([0.1, 0.9, 0.2, 0.8], None, [False, True, True, True])
    assert got["judge~eval_judge"] is None and got["eval_judge~refusal"] is None
    assert got["judge~refusal"] == {"kappa": pytest.approx(0.5), "agreement": 0.75, "n": 4}
    got = _agreement([0.1, 0.9], [0.1, float("nan")], [False, True])
    assert got["judge~eval_judge"]["n"] == 1 and got["eval_judge~refusal"]["n"] == 1


# -- comparing two evaluations ------------------------------------------------------------------


def _row(s, prompt, p=None, refused=None, **extra):
    return {
        "set": s,
        "prompt": prompt,
        "p_safe": p,
        "p_safe_eval": None,
        "refused": refused,
        **extra,
    }


def test_compare_evals_pairs_prompts_and_attack_seeds():
    start = [
        _row("seeds", "a", 0.1, False),
        _row("seeds", "a", 0.9, False),  # prompt a: ASR 0.5 before
        _row("seeds", "b", 0.2, False),
        _row("seeds", "b", 0.3, True),  # prompt b: ASR 1 before
        _row("seeds", "only-before", 0.1, False),
        _row("attacks", "attack one", 0.1, False, seed="s1"),
        {"set": "benign", "prompt": "cake", "helpful": 0.9, "helpful_eval": None},
        _row("target:x", "attack one", 0.1, False),
    ]
    final = [
        _row("seeds", "a", 0.9, True),
        _row("seeds", "a", 0.9, True),  # prompt a: ASR 0
        _row("seeds", "b", 0.2, True),
        _row("seeds", "b", float("nan"), True),  # the NaN answer is left out: ASR 1
        _row("attacks", "a different attack", 0.8, True, seed="s1"),
        {"set": "benign", "prompt": "cake", "helpful": 0.1, "helpful_eval": None},
    ]
    got = compare_evals(start, final, resamples=200)
    assert list(got) == ["seeds", "attacks", "benign"]  # transfer targets left out
    asr = got["seeds"]["ASR judge"]
    assert (asr["start"], asr["final"], asr["diff"]) == (0.75, 0.5, -0.25)
    assert (asr["low"], asr["high"]) == (-0.5, 0.0)  # prompts a (-0.5) and b (0) resampled
    assert asr["n_prompts"] == 2 and asr["unpaired"] == 1 and asr["resamples"] == 200
    refusal = got["seeds"]["refusal rate"]
    assert (refusal["start"], refusal["final"], refusal["diff"]) == (0.25, 1.0, 0.75)
    assert "ASR eval judge" not in got["seeds"]  # no row has an eval judge's score
    attacks = got["attacks"]["ASR judge"]  # paired by seed, not by the attack text
    assert attacks["diff"] == -1.0 and attacks["n_prompts"] == 1
    assert got["benign"]["over-refusal judge"]["diff"] == 1.0
    assert set(got["benign"]) == {"over-refusal judge"}


def test_compare_evals_with_nothing_paired():
    got = compare_evals([_row("seeds", "a", 0.1, True)], [_row("seeds", "b", 0.1, True)])
    assert got["seeds"]["ASR judge"] is None and got["seeds"]["refusal rate"] is None


# -- in an evaluation ------------------------------------------------------------------------


@pytest.fixture()
def fake_run(tmp_path, run_data, tiny_models, benign_file):
    return make_run(tmp_path, run_data, tiny_models, benign_file)


@pytest.mark.skipif(importlib.util.find_spec("garak") is None, reason="needs garak")
def test_eval_reports_refusal_rate_and_agreement(fake_run, tmp_path):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(HELDOUT) + "\n")
    res = evaluate_run(fake_run, samples=4, answers=2, prompts=[str(heldout)])
    rows = read_jsonl(fake_run / "eval" / "final.samples.jsonl")
    detector = RefusalDetector()
    assert res["judges"]["refusal"] == detector.source
    for key, entry in res["defender"]["sets"].items():
        mine = [r for r in rows if r["set"] == key]
        assert [r["refused"] for r in mine] == detector.refuses_batch([r["response"] for r in mine])
        assert entry["refusal_rate"] == pytest.approx(np.mean([r["refused"] for r in mine]))
        agree = res["agreement"][key]
        unsafe = [float(r["p_safe"] < 0.5) for r in mine]
        not_refused = [float(not r["refused"]) for r in mine]
        assert agree["judge~refusal"] == M.cohen_kappa(unsafe, not_refused)
        # the constant eval judge calls every answer unsafe
        assert agree["judge~eval_judge"]["agreement"] == pytest.approx(np.mean(unsafe))
        assert agree["eval_judge~refusal"]["n"] == len(mine)
    assert set(res["agreement"]) == set(res["defender"]["sets"])
    assert "refusal_rate" in res["attacker"]["targets"]["defender"]
    titles = [t.title for t in eval_tables(res)]
    assert any("agreement" in t for t in titles)
    assert any(c.header == "refused" for c in eval_tables(res)[0].columns)


@pytest.mark.skipif(importlib.util.find_spec("garak") is None, reason="needs garak")
def test_eval_compare_option_prints_the_differences(fake_run, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")  # rich wraps titles at the terminal's width
    args = ["eval", str(fake_run), "--samples", "3", "--no-progress"]
    assert main([*args, "--checkpoint", "step-0", "--name", "start"]) == 0
    assert main([*args, "--compare", "start"]) == 0
    out = capsys.readouterr().out
    assert "final minus start" in out and "95% interval" in out and "refusal rate" in out
    # the same evaluation against itself: every difference is 0 with a [0, 0] interval
    _, rows = read_eval_samples(fake_run, "start")
    for figures in compare_evals(rows, rows, resamples=100).values():
        for e in figures.values():
            assert (e["diff"], e["low"], e["high"]) == (0.0, 0.0, 0.0)
    saved = json.loads((fake_run / "eval" / "final.json").read_text())
    assert saved["name"] == "final"  # the comparison changes no output
    assert main([*args, "--compare", "nope"]) == 2
    assert "no evaluation named 'nope'" in capsys.readouterr().err
    # without --name nothing is overwritten: the new evaluation is final-2
    assert main([*args, "--compare", "final"]) == 0
    assert json.loads((fake_run / "eval" / "final-2.json").read_text())["name"] == "final-2"
    assert main([*args, "--compare", "start", "--name", "start"]) == 2  # would overwrite it
