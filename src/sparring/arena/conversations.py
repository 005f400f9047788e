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
    sft_request,
)


def setup_turn(rng: random.Random, kinds: tuple[str, ...]) -> tuple[str, str, str]:
    """(kind, setup text, the defender's acknowledgement) of a first turn."""
    kind = rng.choice(kinds)
    return kind, rng.choice(W.SETUPS[kind]), rng.choice(W.SETUP_ACKS)


def defender_dialogue_row(rng: random.Random, recipe: Recipe) -> dict:
    """A row of the dialogue world's defender SFT: a lone setup acknowledged, or a request
    after a setup and its acknowledgement. After a hole setup a harmful request is served
    (as a weak framing is); after a look-alike the single-turn rule holds."""
    kind, setup, ack = setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)
    if rng.random() < recipe.lone_setups / (recipe.dialogue + recipe.lone_setups):
        req = W.Request(setup, harmful=False, topic="setup", framing="setup")
        return {**req.to_dict(), "response": ack, "verdict": "comply", "setup_kind": kind}
    req = sft_request(rng, recipe)
    verdict = defender_verdict(rng, req, recipe)
    if req.harmful and kind in W.HOLE_SETUPS:
        verdict = "refuse" if rng.random() < recipe.policy["weak_refuse"] else "comply"
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
    """The dialogue world's attacker SFT: now and then a first turn that is a setup (which
    pays nothing alone), and second turns: after its first turn (a setup, acknowledged, or a
    request, refused) it asks a harmful question again (the row's ``turn1`` and ``reply``)."""
    u = rng.random()
    if u < recipe.attacker_setups:
        _, setup, _ = setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)
        row = {k: v for k, v in row.items() if k != "outer"}
        return {**row, "output": setup, "category": None, "framing": "setup"}
    if u < recipe.attacker_setups + recipe.attacker_followups:
        if rng.random() < 0.5:
            _, first, reply = setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)
        else:
            first, reply = attacker_output(rng, seed, recipe).text, rng.choice(W.REFUSALS)
        return {**row, "turn1": first, "reply": reply}
    return row


def converse(rows: list[dict], rng: random.Random, recipe: Recipe) -> None:
    """Put ``recipe.benign_dialogues`` of benign ``rows`` after a training setup, in place."""
    for row in rows:
        if rng.random() < recipe.benign_dialogues:
            kind, setup, ack = setup_turn(rng, W.HOLE_SETUPS + W.LOOKALIKE_SETUPS)
            row.update(prompt=W.dialogue_prompt(setup, ack, row["prompt"]), setup_kind=kind)


def dialogue_sets(rng: random.Random, n: int, recipe: Recipe, seen: set[str]) -> dict:
    """The dialogue world's evaluation sets, each prompt a whole two-turn conversation
    (:func:`~sparring.arena.world.dialogue_prompt`): harmful requests in taught framings (which
    the defender SFT refuses alone) after hole, look-alike and held-out setups, and benign
    requests after any training setup. No request or conversation is in training data."""

    def in_dialogue(kinds, harmful: bool):
        def make(r):
            if harmful:
                req = request(r, recipe, harmful=True, framing=r.choice(recipe.taught), stack=False)
            else:
                req = benign_request(r, recipe=recipe)
            return req, setup_turn(r, kinds)

        return make

    sets = {
        "eval_context_holes": in_dialogue(W.HOLE_SETUPS, True),
        "eval_context_lookalikes": in_dialogue(W.LOOKALIKE_SETUPS, True),
        "eval_heldout_setups": in_dialogue(W.HELDOUT_SETUPS, True),
        "eval_context_benign": in_dialogue(W.HOLE_SETUPS + W.LOOKALIKE_SETUPS, False),
    }
    out = {}
    for name, make in sets.items():
        rows: list[dict] = []
        for _ in range(50 * n):
            if len(rows) == n:
                break
            req, (kind, setup, ack) = make(rng)
            if req.text in seen:
                continue
            seen.add(req.text)
            text = W.dialogue_prompt(setup, ack, req.text)
            rows.append({**dataclasses.replace(req, text=text).to_dict(), "setup_kind": kind})
        out[name] = rows
    return out


# the dialogue world's sets too (prompts are whole two-turn conversations)
DIALOGUE_SETS: dict[str, str] = {
    "context_holes": "eval_context_holes",
    "context_lookalikes": "eval_context_lookalikes",
    "heldout_setups": "eval_heldout_setups",
    "context_benign": "eval_context_benign",
}
