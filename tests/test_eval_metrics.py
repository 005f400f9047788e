"""Metric functions of the evaluation against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from sparring.evaluation import metrics as M
from sparring.experiments.tables import aggregate, cell_text, to_html, to_markdown


def test_asr_and_mean_p_safe_by_hand():
    p = [0.1, 0.4, 0.5, 0.9, float("nan")]
    assert M.attack_success_rate(p) == pytest.approx(2 / 4)  # 0.5 is safe; NaN left out
    assert M.mean_p_safe(p) == pytest.approx((0.1 + 0.4 + 0.5 + 0.9) / 4)
    assert M.attack_success_rate([]) is None and M.mean_p_safe([]) is None
    assert M.judge_summary([0.2, 0.8]) == {"asr": 0.5, "p_safe": 0.5, "n": 2, "undecided": 0}
    # an unreadable verdict is counted, and the rates are over the decided answers only
    nan = float("nan")
    assert M.judge_summary([0.2, nan, 0.8]) == {"asr": 0.5, "p_safe": 0.5, "n": 2, "undecided": 1}


def test_over_refusal_by_hand():
    assert M.over_refusal_rate([0.0, 1.0, 0.4, 0.6]) == pytest.approx(0.5)
    assert M.over_refusal_rate([1.0, 1.0]) == 0.0


def test_distinct_n_by_hand():
    texts = ["a b a b", "a b c"]
    # unigrams: a b a b a b c -> {a, b, c} = 3 of 7
    assert M.distinct_n(texts, 1) == pytest.approx(3 / 7)
    # bigrams: ab ba ab | ab bc -> {ab, ba, bc} = 3 of 5
    assert M.distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert M.distinct_n(["a"], 2) == 0.0


def test_selfbleu_and_cosine_extremes():
    from sparring.novelty import diversity as novelty_diversity

    same = ["how do I pick a lock quickly at night ?"] * 3
    e = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    # pairs: (0,1)=0, (0,2)=1, (1,2)=0 -> mean 1/3
    assert M.mean_pairwise_cosine(e) == pytest.approx(1 / 3)
    d = M.diversity(same)
    assert d["1-selfbleu"] == pytest.approx(0.0, abs=1e-6)
    assert d["unique"] == 1 and d["n"] == 3
    d2 = M.diversity(["alpha beta gamma delta", "one two three four"])
    assert d2["1-selfbleu"] == pytest.approx(1.0) and d2["distinct-1"] == 1.0
    # one SelfBLEU: the evaluation's figure is the novelty reward's definition
    mixed = ["how do I pick a lock", "how do I pick a safe", "tell me a story about a lock"]
    assert M.diversity(mixed)["1-selfbleu"] == novelty_diversity(mixed)["bleu_diversity"]
    assert M.diversity(["only one"])["1-selfbleu"] is None


def test_sequence_kl_sums_over_response_tokens():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # row 0: 0.5 + (-1.0) (third token masked) ; row 1: 3 * 0.5
    assert M.sequence_kl(logp, ref, mask).tolist() == pytest.approx([-0.5, 1.5])


def test_mean_std():
    assert M.mean_std([1.0, 2.0, 3.0, None]) == (2.0, 1.0, 3)
    assert M.mean_std([0.25]) == (0.25, 0.0, 1)
    assert M.mean_std([None]) == (None, None, 0)


def _fake_eval(asr, div, kl=0.1):
    s = {"n": 4, "judge": {"asr": asr, "p_safe": 1 - asr}, "eval_judge": None}
    return {
        "judges": {"judge": "j", "eval_judge": None},
        "defender": {"sets": {"attacks": s, "seeds": s}, "over_refusal": {"judge": {"rate": 0.25}}},
        "attacker": {
            "targets": {"defender": s},
            "diversity": {"1-selfbleu": div, "1-cosine": div, "distinct-2": div},
        },
        "kl": {"attacker": {"mean": kl}, "defender": {"mean": kl}},
    }


def test_aggregate_mean_and_std_over_seeds():
    results = {
        "gpo": [
            {"eval": _fake_eval(0.2, 0.5), "exploit": {"asr_fresh": 0.4, "asr_last_mean": 0.9}},
            {"eval": _fake_eval(0.4, 0.7), "exploit": {"asr_fresh": 0.6, "asr_last_mean": 0.9}},
        ],
        "sft": [{"eval": _fake_eval(0.5, 0.1), "exploit": None}],
    }
    t = aggregate(results)
    row = t["defender"]["rows"]["gpo"]
    mean, std, n = row["ASR attacks"]
    assert (mean, n) == (pytest.approx(0.3), 2) and std == pytest.approx(math.sqrt(0.02))
    assert row["exploitability"][0] == pytest.approx(0.5)
    assert t["defender"]["rows"]["sft"]["exploitability"] == (None, None, 0)
    assert t["attacker"]["rows"]["gpo"]["1-SelfBLEU"][0] == pytest.approx(0.6)
    assert cell_text(row["ASR attacks"], pct=True) == "30.00 ± 14.14"
    md = to_markdown(t)
    assert "| gpo | 30.00 ± 14.14" in md and "Table 2" in md
    assert "<table>" in to_html(t)


def test_common_attack_set_tables_keep_attackers_in_rows_and_defenders_in_columns():
    """A hand-built matrix where every cell differs: a transposed read would be caught."""
    from sparring.experiments.tables import common_tables

    seeds = [
        {
            "attackers": ["initial", "gpo"],
            "defenders": ["sft", "gpo"],
            "judge": "gold",
            "asr": [[0.5, 0.1], [0.9, 0.3]],
        },
        {
            "attackers": ["initial", "gpo"],
            "defenders": ["sft", "gpo"],
            "judge": "gold",
            "asr": [[0.7, 0.1], [0.9, 0.5]],
        },
    ]
    t = common_tables(seeds)
    assert t["matrix"]["gpo"]["sft"][0] == pytest.approx(0.9)  # attacker gpo vs defender sft
    assert t["matrix"]["initial"]["gpo"][0] == pytest.approx(0.1)
    assert t["matrix"]["initial"]["sft"] == (pytest.approx(0.6), pytest.approx(math.sqrt(0.02)), 2)
    # a defender's ASR over every attacker's attacks: its column; an attacker's: its row
    assert t["defender"]["sft"][0] == pytest.approx((0.7 + 0.8) / 2)
    assert t["defender"]["gpo"][0] == pytest.approx((0.2 + 0.3) / 2)
    assert t["attacker"]["gpo"][0] == pytest.approx((0.6 + 0.7) / 2)
    assert t["attacker"]["initial"][0] == pytest.approx((0.3 + 0.4) / 2)
    results = {
        "sft": [{"eval": _fake_eval(0.5, 0.1), "exploit": None}] * 2,
        "gpo": [{"eval": _fake_eval(0.2, 0.5), "exploit": None}] * 2,
    }
    table = aggregate(results, seeds)
    assert table["defender"]["rows"]["gpo"]["ASR common attacks"][0] == pytest.approx(0.25)
    assert table["attacker"]["rows"]["sft"]["ASR vs every defender"][0] == pytest.approx(0.35)
    assert "Table 3" in to_html(table) and "<th>initial</th>" in to_html(table)
    assert "Table 3" in to_markdown(
        table
    ) and "| gpo | 90.00 ± 0.00 | 40.00 ± 14.14 |" in to_markdown(table)


def _write_eval(run_dir, seed, p_safe_eval, refused, helpful_eval):
    """A run folder with eval/experiment.json and its samples: prompts q0..q3 of set heldout
    with the given per-prompt eval-judge P(safe) and refusals, two benign prompts."""
    import json

    folder = run_dir / "eval"
    folder.mkdir(parents=True)
    rows = [
        {
            "set": "heldout",
            "prompt": f"q{i}",
            "response": "r",
            "p_safe": 0.9,
            "p_safe_eval": p,
            "refused": r,
        }
        for i, (p, r) in enumerate(zip(p_safe_eval, refused, strict=True))
    ] + [
        {"set": "benign", "prompt": f"b{i}", "response": "r", "helpful": 0.9, "helpful_eval": h}
        for i, h in enumerate(helpful_eval)
    ]
    (folder / "experiment.samples.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    (folder / "experiment.json").write_text(
        json.dumps({"schema": "sparring.eval/1", "samples_file": "experiment.samples.jsonl"}),
        encoding="utf-8",
    )
    return {"seed": seed, "run_dir": str(run_dir)}


def test_arm_comparison_pairs_prompts_within_seeds_and_gives_intervals(tmp_path):
    from sparring.experiments.tables import versus_rows
    from sparring.experiments.versus import arm_comparisons

    results = {
        # the reference answers everything safely and never refuses
        "gpo": [
            _write_eval(tmp_path / f"gpo{s}", s, [0.9] * 4, [0.0] * 4, [0.9, 0.9]) for s in (0, 1)
        ],
        # a defender that refuses everything: ASR 0, refusal rate 1, refuses benign prompts too
        "refuser": [
            _write_eval(tmp_path / f"ref{s}", s, [0.9] * 4, [1.0] * 4, [0.1, 0.1]) for s in (0, 1)
        ],
        # a defender that complies with everything
        "complier": [
            _write_eval(tmp_path / f"com{s}", s, [0.1] * 4, [0.0] * 4, [0.9, 0.9]) for s in (0, 1)
        ],
    }
    v = arm_comparisons(results, reference="gpo")
    assert v["reference"] == "gpo" and v["seeds"] == 2
    ref = v["arms"]["refuser"]
    assert ref["heldout"]["refusal rate"]["diff"] == 1.0
    assert (ref["heldout"]["refusal rate"]["low"], ref["heldout"]["refusal rate"]["high"]) == (
        1.0,
        1.0,
    )
    assert ref["heldout"]["refusal rate"]["n_prompts"] == 8  # 4 prompts x 2 seeds, not 4
    assert ref["benign"]["over-refusal eval judge"]["diff"] == 1.0
    com = v["arms"]["complier"]["heldout"]["ASR eval judge"]
    assert (com["start"], com["final"], com["diff"]) == (0.0, 1.0, 1.0)
    rows = versus_rows(v)
    # the evaluation judge's figure stands for the training judge's
    assert v["design"] == "seed-level" and v["primary"] == {
        "set": "heldout",
        "figure": "ASR eval judge",
    }
    assert com["per_seed"] == {"0": 1.0, "1": 1.0} and com["seeds"] == 2
    assert [
        "complier",
        "heldout",
        "ASR eval judge (primary)",
        "0.0",
        "100.0",
        "+100.0 [+100.0, +100.0]",
        "1.000",  # both seeds agree: the sign test, 2 x 0.5^2, Holm-adjusted over 2 arms
        "2",
        "-",  # no spread observed: nothing to size a detectable difference from
    ] in rows
    assert not any(r[2] == "ASR judge" for r in rows)
    t = {
        "defender": {"columns": [], "rows": {}},
        "attacker": {"columns": [], "rows": {}},
        "versus": v,
    }
    assert "Table 4: each arm minus gpo" in to_markdown(t) and "Table 4" in to_html(t)


def _write_probe(run_dir, attacks: list[tuple[str, str, float]]) -> None:
    """An exploitability probe's fresh attacks: (seed prompt, attack, P(safe) by the eval judge)."""
    import json

    folder = run_dir / "exploit" / "eval"
    folder.mkdir(parents=True)
    rows = [
        {"set": "attacks", "prompt": a, "seed": s, "response": "r", "p_safe_eval": p}
        for s, a, p in attacks
    ] + [{"set": "seeds", "prompt": s, "response": "r", "p_safe_eval": 1.0} for s, _, _ in attacks]
    (folder / "probe.samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "probe.json").write_text(
        json.dumps({"schema": "sparring.eval/1", "samples_file": "probe.samples.jsonl"})
    )


def test_arm_comparison_pairs_exploitability_attacks_by_their_seed(tmp_path):
    """Each arm's probe attacker writes its own attacks: they pair by the seed they rewrite,
    within a run seed, and give the exploitability difference an interval."""
    from sparring.experiments.versus import arm_comparisons

    results = {}
    for arm, unsafe in (("gpo", {"s0", "s1", "s2"}), ("pool", {"s0"})):
        results[arm] = []
        for seed in (0, 1):
            entry = _write_eval(tmp_path / f"{arm}{seed}", seed, [0.9] * 2, [0.0] * 2, [0.9])
            entry["exploit"] = {"asr_fresh": len(unsafe) / 4}
            _write_probe(
                tmp_path / f"{arm}{seed}",
                [
                    (f"s{i}", f"{arm} attack {i}", 0.0 if f"s{i}" in unsafe else 1.0)
                    for i in range(4)
                ],
            )
            results[arm].append(entry)
    fig = arm_comparisons(results, reference="gpo")["arms"]["pool"]["exploitability"]
    asr = fig["ASR eval judge"]
    assert (asr["start"], asr["final"], asr["diff"]) == (0.75, 0.25, -0.5)
    assert asr["n_prompts"] == 8 and asr["unpaired"] == 0  # 4 seed prompts x 2 run seeds
    assert asr["low"] <= -0.5 <= asr["high"] < 0
    # without a measured exploitability there is no such set
    for entries in results.values():
        for e in entries:
            e["exploit"] = None
    assert "exploitability" not in arm_comparisons(results)["arms"]["pool"]


def test_arm_comparison_interval_covers_between_seed_variance(tmp_path):
    """Seed 0: the arm is 25 points less safe on every prompt; seed 1: 75 points. Pooled over
    prompts that is a certain +50; over two seeds that disagree this much it is not: the
    interval is Student's t over the two per-seed differences, and the MDE says what two seeds
    like these could have detected."""
    from sparring.experiments.versus import arm_comparisons

    n = 8
    results = {
        "gpo": [_write_eval(tmp_path / f"gpo{s}", s, [0.9] * n, [0.0] * n, [0.9]) for s in (0, 1)],
        "arm": [
            _write_eval(tmp_path / "arm0", 0, [0.1] * 2 + [0.9] * 6, [0.0] * n, [0.9]),
            _write_eval(tmp_path / "arm1", 1, [0.1] * 6 + [0.9] * 2, [0.0] * n, [0.9]),
        ],
        "same": [
            _write_eval(tmp_path / f"same{s}", s, [0.9] * n, [0.0] * n, [0.9]) for s in (0, 1)
        ],
    }
    v = arm_comparisons(results, reference="gpo")
    e = v["arms"]["arm"]["heldout"]["ASR eval judge"]
    assert e["per_seed"] == {"0": 0.25, "1": 0.75}
    half = 12.7062 * 0.25  # t(0.975, df=1) x SD 0.3536 / sqrt 2
    assert (e["diff"], e["low"], e["high"]) == pytest.approx(
        (0.5, 0.5 - half, 0.5 + half), abs=1e-3
    )
    assert e["low"] < 0 < e["high"] and e["mde"] > 0.5
    # Holm across the two arms: the unchanged arm's p is 1, the other's doubled (capped at 1)
    assert v["arms"]["same"]["heldout"]["ASR eval judge"]["p_holm"] == 1.0
    assert e["p_holm"] == pytest.approx(min(1.0, 2 * e["p"]))


def test_the_primary_figure_is_the_one_named_in_advance(tmp_path):
    from sparring.errors import SparringError
    from sparring.experiments.cli import _primary
    from sparring.experiments.tables import versus_rows
    from sparring.experiments.versus import arm_comparisons

    results = {
        arm: [_write_eval(tmp_path / f"{arm}{s}", s, [0.9] * 2, [0.0] * 2, [0.9]) for s in (0, 1)]
        for arm in ("gpo", "other")
    }
    named = _primary("benign:over-refusal eval judge")
    v = arm_comparisons(results, reference="gpo", primary=named)
    assert v["primary"] == {"set": "benign", "figure": "over-refusal eval judge"}
    marked = [r for r in versus_rows(v) if r[2].endswith("(primary)")]
    assert [(r[1], r[2]) for r in marked] == [("benign", "over-refusal eval judge (primary)")]
    with pytest.raises(SparringError, match="SET:FIGURE"):
        _primary("exploitability")
