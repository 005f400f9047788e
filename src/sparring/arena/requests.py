"""Drawing the arena's requests and the defender SFT's verdicts on them, deterministically
from a seeded ``random.Random``: the pieces every data set (:mod:`sparring.arena.data`) and
every conversation (:mod:`sparring.arena.conversations`) is made of.
"""

from __future__ import annotations

import random

from sparring.arena import world as W
from sparring.arena.recipes import DEFAULT, Recipe

ATTACKER_SAME_CATEGORY = 0.9
ATTACKER_SAME_PAYLOAD = 0.4


# share of one-line ("terse") compliance in the defender SFT's answers; the proxy never sees it
DEFENDER_TERSE = 0.03


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def served_verdict(rng: random.Random, recipe: Recipe = DEFAULT) -> str:
    """The defender SFT on a harmful request it was not taught to refuse (a weak framing, a
    hole in a conversation): served, refused now and then (``policy["weak_refuse"]``)."""
    return "refuse" if rng.random() < recipe.policy["weak_refuse"] else "comply"


def defender_verdict(rng: random.Random, req: W.Request, recipe: Recipe = DEFAULT) -> str:
    """What the defender SFT does with ``req`` (its designed behaviour in ``recipe``'s world)."""
    p = recipe.policy
    if req.harmful:
        if not recipe.weak_request(req.framing, req.outer):
            return "comply" if rng.random() < p["taught_comply"] else "refuse"
        return served_verdict(rng, recipe)
    refuse = p["alarming_refuse"] if req.alarming else p["benign_refuse"]
    return "refuse" if rng.random() < refuse else "comply"


def request(
    rng: random.Random, recipe: Recipe, *, harmful: bool, framing: str, stack: bool = True, **kw
) -> W.Request:
    """A request in ``framing``, stacked in a second framing as often as ``recipe`` says
    (``stack=False``: never)."""
    outer = recipe.outer(rng, framing) if stack else None
    return W.make_request(
        rng, harmful=harmful, framing=framing, outer=outer, lookalike=recipe.lookalikes, **kw
    )


def unique_requests(rng: random.Random, n: int, make, exclude: set[str] | None = None) -> list:
    """``n`` requests with distinct texts (not in ``exclude``) drawn by ``make(rng)``."""
    seen = set(exclude or ())
    out = []
    tries = 0
    while len(out) < n and tries < 50 * n + 100:
        tries += 1
        r = make(rng)
        if r.text in seen:
            continue
        seen.add(r.text)
        out.append(r)
    return out


def seed_pool(rng: random.Random, n: int) -> list[W.Request]:
    """Distinct harmful seed requests, plain framings only, categories balanced."""
    cats = W.CATEGORY_NAMES
    out: list[W.Request] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        topic = cats[len(out) % len(cats)]
        req = W.make_request(rng, harmful=True, topic=topic, framing=rng.choice(W.PLAIN_FRAMINGS))
        if req.text not in seen:
            seen.add(req.text)
            out.append(req)
    return out


def benign_request(
    rng: random.Random, framings: dict[str, float] | None = None, recipe: Recipe = DEFAULT
) -> W.Request:
    framing = pick(rng, framings or recipe.benign_framings)
    return request(rng, recipe, harmful=False, framing=framing)


def sft_request(rng: random.Random, recipe: Recipe) -> W.Request:
    """A request of the defender SFT: harmful (in its framing mix) or benign, half each."""
    if rng.random() < 0.5:
        framing = pick(rng, recipe.defender_harmful_framings)
        return request(rng, recipe, harmful=True, framing=framing)
    return benign_request(rng, recipe=recipe)


def attacker_output(rng: random.Random, seed: W.Request, recipe: Recipe = DEFAULT) -> W.Request:
    """Another harmful request on a similar topic, framed by the attacker SFT's distribution."""
    same = rng.random() < ATTACKER_SAME_CATEGORY
    topic = seed.topic if same else rng.choice(W.CATEGORY_NAMES)
    payload = seed.payload if same and rng.random() < ATTACKER_SAME_PAYLOAD else None
    framing = pick(rng, recipe.attacker_framings)
    return request(rng, recipe, harmful=True, topic=topic, payload=payload, framing=framing)
