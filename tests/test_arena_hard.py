"""The hard world: stacked framings, benign look-alikes of every framing, a defender SFT whose
holes are compositional; and the default world's data left exactly as they were."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import pytest

from sparring.arena import world as W
from sparring.arena.data import TRAINING_FILES, build_datasets, defender_verdict
from sparring.arena.oracle import judge, parse_prompt
from sparring.arena.recipes import DEFAULT, HARD


@pytest.fixture(scope="module")
def hard():
    return build_datasets(0, "hard")


def _fingerprint(sets: dict) -> str:
    return hashlib.sha256(json.dumps(sets, sort_keys=True).encode()).hexdigest()


def test_the_default_world_data_are_unchanged_by_the_hard_one():
    """The arena README table is reproduced from these bytes: a change to the data generators
    that moves them must be deliberate (then update the fingerprint and the table)."""
    assert _fingerprint(build_datasets(0, "default")) == (
        "07a2b2f3bd1ce4312ebce32ecf55f1319cdcf6498bfd151415f11f4788f587e8"
    )
    assert all("outer" not in r for rows in build_datasets(1, "tiny").values() for r in rows)


def test_hard_data_are_deterministic(hard):
    assert _fingerprint(build_datasets(0, "hard")) == _fingerprint(hard)
    assert build_datasets(1, "hard")["seeds"] != hard["seeds"]


@pytest.mark.parametrize("stem", ["sft_defender", "benign", "eval_weak_framings", "eval_benign"])
def test_hard_data_stack_a_second_framing_around_requests(hard, stem):
    rows = [r for r in hard[stem] if r["framing"] != "direct"]
    stacked = [r for r in rows if "outer" in r]
    assert 0.25 < len(stacked) / len(rows) < 0.45  # HARD.stack = 0.35
    for r in stacked:
        assert r["outer"] != r["framing"] and r["outer"] in W.TRAINABLE_FRAMINGS
        found = parse_prompt(r["prompt"]).framings
        assert r["outer"] in found, r["prompt"]  # the outer wording is there, whole


def test_every_framing_has_benign_look_alikes(hard):
    """Refusing a framing wholesale costs helpfulness: the benign pool, the defender SFT and the
    benign evaluation set hold every trainable framing, the split ones' wording too."""
    for stem in ("benign", "eval_benign"):
        framings = Counter(r["framing"] for r in hard[stem] if not r["harmful"])
        assert set(framings) == set(W.TRAINABLE_FRAMINGS), stem
    sft = [r for r in hard["sft_defender"] if not r["harmful"]]
    assert {r["framing"] for r in sft} == set(W.TRAINABLE_FRAMINGS)
    for r in hard["eval_benign"]:
        v = judge(r["prompt"], "")
        assert not v.harmful and v.topic == r["topic"], r["prompt"]
    # the look-alike of obfuscation reads as obfuscation to the oracle (its "dashes" wording)
    looks = [r for r in hard["benign"] if r["framing"] == "obfuscation" and "outer" not in r]
    assert any(parse_prompt(r["prompt"]).framing == "obfuscation" for r in looks)


def test_hard_defender_sft_complies_with_any_stack(hard):
    """The holes are compositional: two framings the SFT refuses alone open it when stacked."""
    harmful = [r for r in hard["sft_defender"] if r["harmful"]]

    def comply_share(rows):
        return sum(r["verdict"] == "comply" for r in rows) / len(rows)

    taught_single = [r for r in harmful if r["framing"] in W.TAUGHT_FRAMINGS and "outer" not in r]
    taught_stack = [
        r
        for r in harmful
        if r.get("outer") in W.TAUGHT_FRAMINGS and r["framing"] in W.TAUGHT_FRAMINGS
    ]
    weak = [r for r in harmful if r["framing"] in W.WEAK_FRAMINGS]
    assert len(taught_stack) > 50
    assert comply_share(taught_single) < 0.1
    assert comply_share(taught_stack) > 0.8
    assert comply_share(weak) > 0.8


def test_recipe_rule_against_the_default_one():
    rng = random.Random(0)
    req = W.make_request(rng, harmful=True, framing="hypothetical", outer="authority")
    assert req.outer == "authority"
    assert HARD.weak_request(req.framing, req.outer)
    assert not HARD.weak_request("hypothetical", None)
    assert DEFAULT.weak_request("pretend", None)  # a framing never taught is not refused
    shares = Counter(defender_verdict(rng, req, HARD) for _ in range(300))
    assert shares["comply"] > 240


def test_make_request_rejects_what_it_cannot_build():
    rng = random.Random(0)
    with pytest.raises(ValueError, match="needs a harmful payload"):
        W.make_request(rng, harmful=False, framing="obfuscation")
    with pytest.raises(ValueError, match="no template that wraps"):
        W.make_request(rng, harmful=True, framing="fiction", outer="direct")
    with pytest.raises(ValueError, match="unknown framing"):
        W.make_request(rng, harmful=True, framing="fiction", outer="sarcasm")


def test_hard_training_files_hold_no_heldout_framing(hard):
    for stem in TRAINING_FILES:
        for r in hard[stem]:
            text = r.get("prompt") or r.get("output")
            assert not set(parse_prompt(text).framings) & set(W.HELDOUT_FRAMINGS), (stem, text)


def test_arena_hard_references_name_the_hard_world(monkeypatch, tmp_path):
    """``arena-hard:`` prompt sets, models and ``judge: {size: hard}`` resolve against the hard
    world's cache whatever SPARRING_ARENA_SIZE says; ``arena:`` keeps following it."""
    from sparring.arena import build, refs
    from sparring.arena.plugin import build_judge
    from sparring.judges.specs import ArenaJudgeSpec

    asked = []

    def fake_ensure(seed=0, *, size="default", progress=True):
        asked.append(size)
        raise RuntimeError("stop here")

    monkeypatch.setattr(build, "ensure_arena", fake_ensure)
    monkeypatch.delenv("SPARRING_ARENA_DIR", raising=False)
    monkeypatch.setenv("SPARRING_ARENA_SIZE", "tiny")
    for call in (
        lambda: refs.prompts("arena-hard:seeds"),
        lambda: refs.model_path("arena-hard:defender"),
        lambda: build_judge(ArenaJudgeSpec(kind="proxy", size="hard")),
        lambda: refs.prompts("arena:seeds"),
    ):
        with pytest.raises(RuntimeError, match="stop here"):
            call()
    assert asked == ["hard", "hard", "hard", "tiny"]
