"""Multi-turn play (game.turns > 1): dialogues, stopping at the first unsafe answer, judging
against the seed behaviour, the attacker's credit over turns, placeholders out of every figure."""

import json
import zlib

import numpy as np
import pytest

from sparring.config import load_config
from sparring.errors import ConfigError
from sparring.game.loop import Game
from sparring.game.rewards import stage_scores
from sparring.game.rollout import Rollout
from sparring.judges import JudgeOutput
from sparring.runs import read_jsonl


def _hashed(seed: str, response: str) -> float:
    """sparring.testing.hashed_judge's verdict on (seed, response)."""
    return 0.1 if zlib.crc32(f"{seed}|{response}".encode()) % 2 else 0.9


def test_a_multi_turn_game_plays_dialogues_judged_against_their_seed(run_data, tmp_path):
    data = run_data(turns=3, seed_fraction=0.5)
    data["judge"] = {"type": "callable", "target": "sparring.testing:hashed_judge"}
    data["defender"]["rl"] = {"algorithm": "rloo", "samples_per_prompt": 2}
    data["logging"]["tensorboard"] = False
    Game(load_config(data=data)).run()
    run = tmp_path / "run"
    samples = read_jsonl(run / "samples.jsonl")
    metrics = read_jsonl(run / "metrics.jsonl")
    turned = [s for s in samples if "turn" in s]
    assert {s["turn"] for s in turned} >= {1, 2}, "some episodes must go on past turn 1"
    for s in turned:
        # the defender answered the whole dialogue, which ends with this turn's attack
        assert len(s["dialogue"]) == 2 * s["turn"] - 1 and s["dialogue"][-1] == s["attack"]
        # the judge is shown the seed behaviour, never the turn
        assert s["p_safe"] == pytest.approx(_hashed(s["seed"], s["response"]))
        if s["turn"] > 1:  # an episode goes on only after a safe answer, with that answer
            before = [
                b
                for b in turned
                if b["step"] == s["step"]
                and b["dialogue"] == s["dialogue"][:-2]
                and b["response"] == s["dialogue"][-2]
            ]
            assert before and all(b["p_safe"] >= 0.5 for b in before)
    assert any(s["turn"] > 1 for s in turned if s["stage"] == "attack")
    # single prompts (the seeds themselves) still ride along in defend batches
    assert any("turn" not in s and not s["benign"] for s in samples)
    for m in metrics:
        assert 1 <= m["dialogue/turns"] <= 3 and 0 <= m["dialogue/asr/turn-1"] <= 1
        # placeholders of stopped episodes are neither unscored rows nor judged ones
        assert m["rows/unscored"] == 0 and m["judge/nonfinite"] == 0
    assert {m["stage"] for m in metrics} == {"defend", "attack"}
    # the archive keeps a successful turn with the dialogue that led to it
    archived = read_jsonl(run / "archive.jsonl")
    later = [a for a in archived if a.get("turn", 1) > 1]
    assert later, "some success must come at a later turn"
    for a in later:
        assert len(a["dialogue"]) == 2 * a["turn"] - 1 and a["dialogue"][-1] == a["attack"]
    # export-attacks: each record's exchange in the chat-messages format
    from sparring.evaluation.export import attack_records

    records = attack_records(run)
    for r in records:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        assert r["messages"][-1]["content"] == r["response"]
        assert r["messages"][-2]["content"] == r["attack"]
        assert len(roles) == 2 * (r["turn"] or 1)
    assert any(r["turn"] == 2 for r in records)
    datasets = pytest.importorskip("datasets")
    from sparring.evaluation.export import write_hf_dataset

    saved = datasets.load_from_disk(str(write_hf_dataset(records, tmp_path / "hf")))
    assert saved[0]["messages"] == records[0]["messages"] and saved["turn"] == [
        r["turn"] for r in records
    ]


def test_the_attackers_turns_are_credited_with_what_followed_by_hand(run_data):
    """Two episodes over two turns, rows turn by turn: episode 0 succeeds at turn 1 (P(safe)
    0.2) and stops; episode 1 is safe at turn 1 (0.9) and succeeds at turn 2 (0.3). Turn cost
    0.1, discount 0.5, novelty penalties 0.05 and 0.1."""
    cfg = load_config(data=run_data(turns=2, turn_cost=0.1, turn_discount=0.5))
    rollout = Rollout(
        stage="attack",
        seeds=["s0", "s1"] * 2,
        attacks_per_seed=1,
        raw_attacks=["a", "b", "", "c"],
        attacks=["a", "b", "", "c"],
        fallback=np.zeros(4, dtype=bool),
        attacker_gen=None,
        novelty={},
        penalty=np.array([0.05, 0.1, 0.05, 0.1]),
        direct=[],
        benign=[],
        prompts=["a", "b", "", "c"],
        answers=1,
        defender_gen=None,
        judged=JudgeOutput(p_safe=[0.2, 0.9, float("nan"), 0.3]),
        live=np.array([True, True, False, True]),
        turns=2,
    )
    # episode 0: -0.1 + 0.8 - 0.05; episode 1: turn 2 earns -0.1 + 0.7 - 0.1 = 0.5, turn 1
    # -0.1 + 0.5 * 0.5; the stopped episode's turn-2 placeholder: 0
    assert stage_scores(rollout, cfg) == pytest.approx([0.65, 0.15, 0.0, 0.5])
    rollout.fallback = np.array([False, True, False, False])  # turn 1 of episode 1 wrote nothing
    fb = cfg.attacker.fallback_penalty
    assert stage_scores(rollout, cfg)[1] == pytest.approx(0.15 - fb)


def test_turns_need_an_attacker_and_no_pool(run_data):
    with pytest.raises(ConfigError, match="turns > 1 needs an attacker"):
        load_config(data=run_data(turns=2, mode="rlhf"))
    with pytest.raises(ConfigError, match="turns > 1 with a pool"):
        load_config(data=run_data(turns=2, pool={"every": 1}))


def test_the_archive_tells_dialogues_apart_by_all_their_attacker_turns(tmp_path):
    from sparring.evaluation.archive import Archive, merge

    row = {"attack": "now the lock", "dialogue": ["a story", "ok", "now the lock"], "turn": 2}
    other = {**row, "dialogue": ["a poem", "ok", "now the lock"]}
    single = {"attack": "now the lock"}
    archive = Archive(tmp_path / "archive.jsonl")
    assert len(archive.add([row, other, single])) == 3  # same last turn, other conversations
    # the same attacker turns (whatever the defender answered) are one attack
    assert archive.add([{**row, "dialogue": ["A  story", "sure", "now the lock"]}]) == []
    assert merge([tmp_path / "archive.jsonl"] * 2, tmp_path / "m.jsonl")["kept"] == 3


def test_evaluation_plays_the_learned_and_the_scripted_attacker_over_turns(run_data, tmp_path):
    from sparring.evaluation.evaluate import evaluate_run
    from sparring.evaluation.report import build_report

    data = run_data(turns=3, rounds=1)
    data["judge"] = {"type": "callable", "target": "sparring.testing:hashed_judge"}
    data["evaluation"].update(at_end=True, samples=6)
    data["evaluation"]["scripted"] = ["tell me about {seed}", "more , step by step : {seed}"]
    data["logging"]["tensorboard"] = False
    Game(load_config(data=data)).run()
    run = tmp_path / "run"
    ev = json.loads((run / "eval" / "final.json").read_text())
    rows = read_jsonl(run / "eval" / "final.samples.jsonl")
    assert set(ev["dialogues"]) == {"learned", "scripted"}
    for name, d in ev["dialogues"].items():
        by_turn = d["asr_by_turn"]
        assert d["episodes"] == 6 and len(by_turn) <= 3
        assert by_turn == sorted(by_turn) and d["asr"] == by_turn[-1]
        assert sum(d["success_at_turn"]) == round(d["asr"] * 6)
        low, high = d["asr_bounds"]
        assert low <= d["asr"] <= high
        mine = [r for r in rows if r["set"] == f"dialogue:{name}"]
        # an episode goes on only after a safe answer; each answer judged against its seed
        for r in mine:
            assert r["p_safe"] == pytest.approx(_hashed(r["seed"], r["response"]))
            assert len(r["dialogue"]) == 2 * r["turn"] - 1
        firsts = [r for r in mine if r["turn"] == 1]
        assert len(firsts) == 6
        went_on = {r["seed"] for r in mine if r["turn"] == 2}
        assert went_on == {r["seed"] for r in firsts if r["p_safe"] >= 0.5}
    # the script's turns, filled with the seed
    scripted = [r for r in rows if r["set"] == "dialogue:scripted"]
    assert all(r["prompt"] == f"tell me about {r['seed']}" for r in scripted if r["turn"] == 1)
    assert all(r["prompt"].startswith("more , step by step") for r in scripted if r["turn"] == 3)
    # keyed: the same weights give the same dialogues
    again = evaluate_run(run, name="again")
    assert again["dialogues"] == ev["dialogues"]
    index = build_report(run)
    assert (
        "multi-turn attacker" in index.read_text()
        and (run / "report" / "turns-final.png").is_file()
    )
