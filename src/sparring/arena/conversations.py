"""The dialogue world's conversations: first turns (setups, and split words that carry half a
payload), the two-turn rows of both players' SFT, the benign conversations and the evaluation
sets of whole conversations (``arena-dialogue:``; docs/arena.md, docs/multiturn.md).

A conversation is stored as one row whose ``setup`` and ``ack`` come before its ``prompt``
(:func:`~sparring.arena.world.dialogue_prompt` renders it); an attacker row's ``turn1`` and
``reply`` are what it is shown before its second turn.
"""

from __future__ import annotations

import dataclasses
import random

from sparring.arena import world as W
from sparring.arena.recipes import Recipe
from sparring.arena.requests import (
    DEFENDER_TERSE,
    attacker_output,
    benign_request,
    defender_verdict,
    request,
    served_verdict,
    sft_request,
)


def setup_turn(rng: random.Random, kinds: tuple[str, ...]) -> tuple[str, str, str]:
    """(kind, setup text, the defender's acknowledgement) of a first turn."""
    kind = rng.choice(kinds)
    return kind, rng.choice(W.SETUPS[kind]), rng.choice(W.SETUP_ACKS)


def first_turn(rng: random.Random, recipe: Recipe) -> tuple[str, str, str]:
    """A training conversation's first turn: a split opener (half of any payload) as often as
    ``recipe.split`` says, else a hole or look-alike setup; (kind, text, acknowledgement)."""
    if recipe.split and rng.random() < recipe.split:
        return "split", W.split_opener(rng), rng.choice(W.SETUP_ACKS)
    return setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)


def split_request(rng: random.Random, recipe: Recipe, topic: str | None = None):
    """A harmful request in a taught framing (its payload shown whole) and its two split turns
    (:func:`~sparring.arena.world.split_turns`)."""
    framing = rng.choice(recipe.taught)
    req = request(rng, recipe, harmful=True, topic=topic, framing=framing, stack=False)
    return req, W.split_turns(rng, req)


def defender_dialogue_row(rng: random.Random, recipe: Recipe) -> dict:
    """A row of the dialogue world's defender SFT: a lone first turn acknowledged, or a request
    after a first turn and its acknowledgement. After a hole setup a harmful request is served
    (as a weak framing is); after a look-alike the single-turn rule holds. A harmful request
    split over the two turns (``recipe.split`` of the requests) is served too, its payload
    joined from the turns' halves ("zor - blax"); a benign one after a split opener is answered
    as it would be alone."""
    kind, setup, ack = first_turn(rng, recipe)
    if rng.random() < recipe.lone_setups / (recipe.dialogue + recipe.lone_setups):
        req = W.Request(setup, harmful=False, topic="setup", framing="setup")
        return {**req.to_dict(), "response": ack, "verdict": "comply", "setup_kind": kind}
    if kind == "split" and rng.random() < 0.5:
        req, (setup, ask) = split_request(rng, recipe)
        verdict = served_verdict(rng, recipe)
        # served as the obfuscation framing is: the payload in the halves the turns hold
        resp = W.respond(rng, dataclasses.replace(req, framing="obfuscation"), verdict)
        req = dataclasses.replace(req, text=ask)
    else:
        req = benign_request(rng, recipe=recipe) if kind == "split" else sft_request(rng, recipe)
        verdict = defender_verdict(rng, req, recipe)
        if req.harmful and kind in W.HOLE_SETUPS:
            verdict = served_verdict(rng, recipe)
        resp = W.respond(rng, req, verdict, terse=DEFENDER_TERSE)
    return {
        **req.to_dict(),
        "setup": setup,
        "ack": ack,
        "setup_kind": kind,
        "response": resp.text,
        "verdict": resp.verdict,
    }


def attacker_dialogue(rng: random.Random, row: dict, seed: W.Request, recipe: Recipe) -> dict:
    """The dialogue world's attacker SFT: now and then a first turn that is a setup or a split
    opener (which pay nothing alone), and second turns: after its first turn (a setup,
    acknowledged, or a request, refused) it asks a harmful question again; after a split
    opener, acknowledged, it asks with the other half (the row's ``turn1`` and ``reply``)."""
    u = rng.random()
    split = bool(recipe.split) and rng.random() < recipe.split
    if u < recipe.attacker_setups:
        if split:
            setup = W.split_opener(rng, seed.topic)
        else:
            _, setup, _ = setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)
        row = {k: v for k, v in row.items() if k != "outer"}
        kind = "split" if split else "setup"
        return {**row, "output": setup, "category": None, "framing": kind}
    if u < recipe.attacker_setups + recipe.attacker_followups:
        if split:
            req, (first, ask) = split_request(rng, recipe, seed.topic)
            row = {k: v for k, v in row.items() if k != "outer"}
            out = {"output": ask, "category": req.category, "framing": "split"}
            return {**row, **out, "turn1": first, "reply": rng.choice(W.SETUP_ACKS)}
        if rng.random() < 0.5:
            _, first, reply = setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)
        else:
            first, reply = attacker_output(rng, seed, recipe).text, rng.choice(W.REFUSALS)
        return {**row, "turn1": first, "reply": reply}
    return row


def converse(rows: list[dict], rng: random.Random, recipe: Recipe) -> None:
    """Put ``recipe.benign_dialogues`` of benign ``rows`` after a training first turn (a setup
    or a split opener), in place."""
    for row in rows:
        if rng.random() < recipe.benign_dialogues:
            kind, setup, ack = first_turn(rng, recipe)
            row.update(prompt=W.dialogue_prompt(setup, ack, row["prompt"]), setup_kind=kind)


def dialogue_sets(rng: random.Random, n: int, recipe: Recipe, seen: set[str]) -> dict:
    """The dialogue world's evaluation sets, each prompt a whole two-turn conversation
    (:func:`~sparring.arena.world.dialogue_prompt`): harmful requests in taught framings (which
    the defender SFT refuses alone) after hole, look-alike and held-out setups, and benign
    requests after any training setup. With split conversations (``recipe.split``), harmful
    requests split over the two turns and benign requests after a split opener too. No
    request or conversation is in training data."""

    def in_dialogue(kinds, harmful: bool):
        def make(r):
            if harmful:
                req = request(r, recipe, harmful=True, framing=r.choice(recipe.taught), stack=False)
            else:
                req = benign_request(r, recipe=recipe)
            return req, req.text, setup_turn(r, kinds)

        return make

    def split(harmful: bool):
        def make(r):
            if harmful:
                req, (first, ask) = split_request(r, recipe)
            else:
                req = benign_request(r, recipe=recipe)
                first, ask = W.split_opener(r), req.text
            return req, ask, ("split", first, r.choice(W.SETUP_ACKS))

        return make

    sets = {
        "eval_context_holes": in_dialogue(W.HOLE_SETUPS, True),
        "eval_context_lookalikes": in_dialogue(W.LOOKALIKE_SETUPS, True),
        "eval_heldout_setups": in_dialogue(W.HELDOUT_SETUPS, True),
        "eval_context_benign": in_dialogue(W.HOLE_SETUPS + W.LOOKALIKE_SETUPS, False),
    }
    if recipe.split:
        sets.update(eval_split_holes=split(True), eval_split_benign=split(False))
    out = {}
    for name, make in sets.items():
        rows: list[dict] = []
        for _ in range(50 * n):
            if len(rows) == n:
                break
            req, ask, (kind, setup, ack) = make(rng)
            text = W.dialogue_prompt(setup, ack, ask)
            if req.text in seen or text in seen:
                continue
            seen |= {req.text, text}
            rows.append({**dataclasses.replace(req, text=text).to_dict(), "setup_kind": kind})
        out[name] = rows
    return out


# the dialogue world's sets too (prompts are whole two-turn conversations)
DIALOGUE_SETS: dict[str, str] = {
    "context_holes": "eval_context_holes",
    "context_lookalikes": "eval_context_lookalikes",
    "heldout_setups": "eval_heldout_setups",
    "context_benign": "eval_context_benign",
    "split_holes": "eval_split_holes",
    "split_benign": "eval_split_benign",
}
