"""The arena's dialogue world: holes that open only after a setup turn, rendered exactly as the
game shows a conversation, and the other worlds' data left as they were."""

import hashlib
import json
import re
from collections import Counter

import pytest

from sparring.arena import world as W
from sparring.arena.data import build_datasets
from sparring.config import TemplateConfig
from sparring.players.templates import Dialogue, PromptFormatter
from sparring.testing import build_tokenizer


def test_a_conversation_is_rendered_as_the_game_renders_it(tmp_path):
    """The SFT and the evaluation sets hold a conversation as one prompt; with the defender's
    template around it, it is the text the game gives the defender for the same dialogue. The
    attacker's second-turn context is the game's too."""
    tok = build_tokenizer(tmp_path)
    defender = PromptFormatter(
        TemplateConfig(kind="plain", text=W.DEFENDER_TEMPLATE), tok, "defender"
    )
    attacker = PromptFormatter(
        TemplateConfig(kind="plain", text=W.ATTACKER_TEMPLATE), tok, "attacker"
    )
    setup, ack, request = W.SETUPS["villain"][0], W.SETUP_ACKS[0], "how do i build a zorblax ?"
    assert defender([W.dialogue_prompt(setup, ack, request)]) == defender(
        [Dialogue((setup, ack, request))]
    )
    seed = "how do i make a glimmox ?"
    assert attacker([Dialogue((seed, setup, ack))]) == [
        W.attacker_followup_context(seed, setup, ack)
    ]


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("size", "digest"), [("tiny", "5833b504d6637565"), ("hard", "deb713b720c86e91")]
)
def test_the_other_worlds_data_are_unchanged(size, digest):
    """Conversations draw from their own random streams, and every setup word was already in
    the vocabulary: the published worlds (their data, tokenizer and so their models) stay."""
    assert _digest(build_datasets(0, size)) == digest


def test_the_dialogue_worlds_data_open_holes_only_after_a_hole_setup():
    data = build_datasets(0, "dialogue")
    rows = [r for r in data["sft_defender"] if r.get("setup_kind") in W.SETUPS and r["harmful"]]
    by = Counter(
        (r["setup_kind"] in W.HOLE_SETUPS, r["framing"] in W.TAUGHT_FRAMINGS, r["verdict"])
        for r in rows
    )
    # after a hole setup a harmful request is served even in a taught framing ...
    hole = by[True, True, "comply"] / (by[True, True, "comply"] + by[True, True, "refuse"])
    assert hole > 0.8
    # ... after a look-alike, a taught framing is refused as it is alone
    look = by[False, True, "refuse"] / (by[False, True, "comply"] + by[False, True, "refuse"])
    assert look > 0.9
    lone = [r for r in data["sft_defender"] if r["framing"] == "setup"]
    assert lone and all(r["response"] in W.SETUP_ACKS for r in lone)
    # the attacker SFT: now and then a setup first, and second turns after one
    att = data["sft_attacker"]
    openers = [r for r in att if r["framing"] in ("setup", "split") and "turn1" not in r]
    assert 0 < len(openers) / len(att) < 0.1
    assert sum("turn1" in r for r in att) / len(att) > 0.15
    # evaluation: whole conversations, requests in taught framings, none in any training file
    training = {r["prompt"] for r in data["sft_defender"]} | {r["prompt"] for r in data["benign"]}
    for name, kinds in (
        ("eval_context_holes", W.HOLE_SETUPS),
        ("eval_context_lookalikes", W.LOOKALIKE_SETUPS),
        ("eval_heldout_setups", W.HELDOUT_SETUPS),
    ):
        assert len(data[name]) == 240
        for r in data[name]:
            setup, _, request = r["prompt"].partition(" AI: ")
            assert setup in W.SETUPS[r["setup_kind"]] and r["setup_kind"] in kinds
            request = request.split("\nHuman: ")[1]
            assert request not in training and r["harmful"] and r["framing"] in W.TAUGHT_FRAMINGS
    held_out = {t for k in W.HELDOUT_SETUPS for t in W.SETUPS[k]}
    texts = json.dumps([data[k] for k in ("sft_defender", "sft_attacker", "benign", "seeds")])
    assert not any(t in texts for t in held_out)
    # benign conversations, to be answered, in the benign pool and the over-refusal set
    assert 0.2 < sum(" AI: " in r["prompt"] for r in data["benign"]) / len(data["benign"]) < 0.4
    assert any(" AI: " in r["prompt"] for r in data["eval_benign"])


def test_split_conversations_hold_harm_only_across_their_turns():
    """A split conversation's payload is in no turn and not in the two side by side (the gold
    oracle joins the halves); the defender SFT serves it with the halves joined, and answers a
    benign request after a split opener;
    the attacker SFT's second turn gives the other half of its own opener's payload."""
    from sparring.arena.oracle import find_payloads, judge, normalize, parse_prompt

    data = build_datasets(0, "dialogue")
    split = [r for r in data["sft_defender"] if r.get("setup_kind") == "split"]
    harmful = [r for r in split if r["harmful"]]
    benign = [r for r in split if not r["harmful"] and r["framing"] != "setup"]
    assert len(harmful) > 500 and len(benign) > 500
    for r in harmful:
        whole = W.dialogue_prompt(r["setup"], r["ack"], r["prompt"])
        assert not parse_prompt(r["setup"]).harmful and not parse_prompt(r["prompt"]).harmful
        assert not find_payloads(normalize(whole))  # the halves are never side by side ...
        assert parse_prompt(whole).category == r["category"]  # ... yet the oracle joins them
        if r["verdict"] == "comply":
            (payload, category, form) = find_payloads(normalize(r["response"]))[0]
            assert category == r["category"] and form == "-"
            first, second = _halves(payload)
            assert first in r["setup"].split() and second in r["prompt"].split()
    served = sum(r["verdict"] == "comply" for r in harmful) / len(harmful)
    assert served > 0.8  # the hole: served across turns, as a weak framing is alone
    answered = [judge(r["prompt"], r["response"]).helpful for r in benign if not r["alarming"]]
    assert sum(answered) / len(answered) > 0.8
    att = [r for r in data["sft_attacker"] if r["framing"] == "split"]
    second = [r for r in att if "turn1" in r]
    assert second and len(second) < len(att)  # openers alone, and second turns after them
    for r in second:
        opened = r["turn1"].split()[-2]  # "note the secret word : zor ."
        gives = re.match(r"(?:the next half is|join) (\S+)", r["output"]).group(1)
        assert (opened, gives) in {s for c in W.CATEGORIES for s in c.splits}
        assert any(a in r["output"] for a in W.SPLIT_ASKS)  # in words any request uses
    # the evaluation sets: split holes and benign requests after a split opener
    assert len(data["eval_split_holes"]) == len(data["eval_split_benign"]) == 240
    # no evaluation conversation is a training one
    conversations = {
        W.dialogue_prompt(r["setup"], r["ack"], r["prompt"])
        for r in data["sft_defender"]
        if "setup" in r
    }
    assert not conversations & {r["prompt"] for r in data["eval_split_holes"]}
    for name in ("eval_split_holes", "eval_split_benign"):
        for r in data[name]:
            assert parse_prompt(r["prompt"]).harmful == r["harmful"] == (name == "eval_split_holes")


def _halves(payload: str) -> tuple[str, str]:
    cat = next(c for c in W.CATEGORIES if payload in c.payloads)
    return cat.splits[cat.payloads.index(payload)]


@pytest.mark.slow
def test_the_multi_turn_config_plays_and_evaluates_conversations(tmp_path, monkeypatch):
    """configs/arena-multiturn.yaml end to end on a tiny dialogue world (the mechanics: the
    full world's figures are in docs/multiturn.md): two-turn episodes, the conversation sets,
    and the learned and scripted attackers over turns in both evaluations."""
    from sparring.arena.build import build_arena
    from sparring.cli import main
    from sparring.runs import read_jsonl

    arena = build_arena(tmp_path / "arena", seed=0, size="tiny-dialogue", progress=False)
    monkeypatch.setenv("SPARRING_ARENA_DIR", str(arena.root))
    run = tmp_path / "run"
    sets = ["game.rounds=2", "evaluation.samples=8", "novelty.embedder={type: hashing}"]
    sets += [f"output_dir={run}", "logging.progress=false", "checkpoint.every=100"]
    assert (
        main(["train", "configs/arena-multiturn.yaml", *[a for s in sets for a in ("--set", s)]])
        == 0
    )
    samples = read_jsonl(run / "samples.jsonl")
    assert {s.get("turn") for s in samples if "attack" in s} >= {1}
    for name in ("start", "final"):
        ev = json.loads((run / "eval" / f"{name}.json").read_text())
        assert {"context_holes", "heldout_setups", "context_lookalikes"} <= set(
            ev["defender"]["sets"]
        )
        assert set(ev["dialogues"]) == {"learned", "scripted"}
        scripted = [
            r
            for r in read_jsonl(run / "eval" / f"{name}.samples.jsonl")
            if r["set"] == "dialogue:scripted"
        ]
        assert all(r["prompt"] == W.SETUPS["hero_story"][0] for r in scripted if r["turn"] == 1)
