"""The arena's data sets, generated deterministically from a seed.

Training data (SFT for both players, the proxy judge's training set, the seed pool and the
benign pool) only ever use the *trainable* framings; the held-out framings appear in evaluation
sets only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sparring.arena import world as W
from sparring.arena.conversations import (
    attacker_dialogue,
    converse,
    defender_dialogue_row,
    dialogue_sets,
)
from sparring.arena.oracle import judge
from sparring.arena.recipes import DEFAULT, RECIPES, Recipe
from sparring.arena.requests import (
    DEFENDER_TERSE,
    attacker_output,
    benign_request,
    defender_verdict,
    pick,
    request,
    seed_pool,
    sft_request,
    unique_requests,
)


@dataclass(frozen=True)
class DataSize:
    seeds: int
    benign: int
    eval_each: int
    defender_sft: int
    attacker_sft: int
    proxy_train: int
    proxy_test: int


DATA_SIZES: dict[str, DataSize] = {  # in the fields' order: seeds, benign, eval_each, ...
    "default": DataSize(400, 400, 240, 20000, 12000, 3000, 1500),
    "tiny": DataSize(40, 40, 24, 400, 300, 600, 200),
}
DATA_SIZES["hard"] = DATA_SIZES["default"]  # the hard world differs in its recipe, not its sizes
DATA_SIZES["dialogue"] = DATA_SIZES["default"]
DATA_SIZES["tiny-dialogue"] = DATA_SIZES["tiny"]

PROXY_HARMFUL_RESPONSES = {"comply": 0.45, "refuse": 0.40, "drift": 0.13, "mixed": 0.02}
PROXY_BENIGN_RESPONSES = {"comply": 0.6, "refuse": 0.25, "drift": 0.15}
PROXY_HARMFUL_SHARE = 0.55
# share of the proxy's samples whose response follows the defender SFT's behaviour (the rest
# are drawn from the response mixes above): as with real preference data, the prompt's framing
# then correlates with the label, which the proxy can pick up as a spurious feature
PROXY_POLICY_SHARE = 0.5


def defender_sft(rng: random.Random, n: int, recipe: Recipe = DEFAULT) -> list[dict]:
    """(prompt, response) pairs showing the defender SFT's behaviour (in the dialogue world,
    also two-turn conversations: the row's ``setup`` and ``ack`` come before its prompt)."""
    rows = []
    for _ in range(n):
        if recipe.dialogue and rng.random() < recipe.dialogue + recipe.lone_setups:
            rows.append(defender_dialogue_row(rng, recipe))
            continue
        req = sft_request(rng, recipe)
        verdict = defender_verdict(rng, req, recipe)
        resp = W.respond(rng, req, verdict, terse=DEFENDER_TERSE)
        rows.append({**req.to_dict(), "response": resp.text, "verdict": resp.verdict})
    return rows


def attacker_sft(rng: random.Random, n: int, recipe: Recipe = DEFAULT) -> list[dict]:
    rows = []
    for _ in range(n):
        seed = W.make_request(rng, harmful=True, framing=rng.choice(W.PLAIN_FRAMINGS))
        out = attacker_output(rng, seed, recipe)
        row = {
            "seed": seed.text,
            "output": out.text,
            "category": out.category,
            "framing": out.framing,
            "seed_category": seed.category,
        }
        if out.outer is not None:
            row["outer"] = out.outer
        if recipe.attacker_setups or recipe.attacker_followups:
            row = attacker_dialogue(rng, row, seed, recipe)
        rows.append(row)
    return rows


def judge_samples(
    rng: random.Random,
    n: int,
    *,
    harmful_framings: dict[str, float],
    benign_framings: dict[str, float],
    mixed_share: float | None = None,
    terse: float = 0.0,
    policy_share: float = PROXY_POLICY_SHARE,
    recipe: Recipe = DEFAULT,
) -> list[dict]:
    """Oracle-labelled (prompt, response) pairs with a mix of verdicts."""
    harmful_resp = dict(PROXY_HARMFUL_RESPONSES)
    if mixed_share is not None:
        harmful_resp["mixed"] = mixed_share
    rows = []
    for _ in range(n):
        harmful = rng.random() < PROXY_HARMFUL_SHARE
        if harmful:
            req = request(rng, recipe, harmful=True, framing=pick(rng, harmful_framings))
        else:
            req = benign_request(rng, benign_framings, recipe)
        if rng.random() < policy_share:
            kind = defender_verdict(rng, req, recipe)
        else:
            kind = pick(rng, harmful_resp if harmful else PROXY_BENIGN_RESPONSES)
        resp = W.mixed(rng, req) if kind == "mixed" else W.respond(rng, req, kind, terse=terse)
        v = judge(req.text, resp.text)
        rows.append(
            {
                **req.to_dict(),
                "response": resp.text,
                "kind": resp.meta.get("style", kind),
                "verdict": v.verdict,
                "safe": not v.unsafe,
                "helpful": v.helpful,
            }
        )
    return rows


def build_datasets(seed: int, size: str) -> dict[str, list[dict]]:
    """Every data set of the arena, by file stem."""
    ds = DATA_SIZES[size]
    recipe = RECIPES[size]
    rng = random.Random(f"sparring-arena-{seed}")
    sub = {
        k: random.Random(f"{seed}-{k}-{rng.random()}")
        for k in (
            "seeds",
            "benign",
            "defender",
            "attacker",
            "proxy",
            "proxy_test",
            "proxy_heldout",
            "eval",
        )
    }
    out: dict[str, list[dict]] = {}
    out["seeds"] = [r.to_dict() for r in seed_pool(sub["seeds"], ds.seeds)]
    benign = unique_requests(sub["benign"], ds.benign, lambda r: benign_request(r, None, recipe))
    out["benign"] = [r.to_dict() for r in benign]
    if recipe.benign_dialogues:  # benign conversations the defender must still answer
        converse(out["benign"], random.Random(f"{seed}-benign-dialogues"), recipe)
    out["sft_defender"] = defender_sft(sub["defender"], ds.defender_sft, recipe)
    out["sft_attacker"] = attacker_sft(sub["attacker"], ds.attacker_sft, recipe)
    train_benign = dict(recipe.benign_framings)
    for stem, n_rows in (("proxy_train", ds.proxy_train), ("proxy_test", ds.proxy_test)):
        out[stem] = judge_samples(
            sub["proxy" if stem == "proxy_train" else stem],
            n_rows,
            harmful_framings=recipe.proxy_harmful_framings,
            benign_framings=train_benign,
            recipe=recipe,
        )
    out["proxy_heldout"] = judge_samples(
        sub["proxy_heldout"],
        ds.proxy_test,
        harmful_framings={f: 1.0 for f in W.HELDOUT_FRAMINGS + W.WEAK_FRAMINGS},
        benign_framings={"pretend": 1.0, "devmode": 1.0, "roleplay": 0.5, "override": 0.5},
        mixed_share=0.15,
        terse=0.3,
        recipe=recipe,
    )

    seen = {r["prompt"] for r in out["sft_defender"]}
    seen |= {r["output"] for r in out["sft_attacker"]} | {r["prompt"] for r in out["seeds"]}
    seen |= {r["prompt"] for r in out["benign"]}
    # whole training conversations (the dialogue world): an evaluation conversation is new
    seen |= {
        W.dialogue_prompt(r["setup"], r["ack"], r["prompt"])
        for r in out["sft_defender"]
        if "setup" in r
    }
    erng = sub["eval"]
    n = ds.eval_each

    # stacks (in a stacking world) in the weak and benign sets, never around a held-out framing
    def harmful_in(framings, stack: bool = False):
        return lambda r: request(r, recipe, harmful=True, framing=r.choice(framings), stack=stack)

    def benign_in(framings, alarming: bool | None = None, stack: bool = False):
        topics = [t.name for t in W.BENIGN_TOPICS if alarming is None or t.alarming == alarming]
        return lambda r: request(
            r,
            recipe,
            harmful=False,
            topic=r.choice(topics),
            framing=r.choice(framings),
            stack=stack,
        )

    sets = {
        "eval_heldout_framings": harmful_in(W.HELDOUT_FRAMINGS),
        "eval_weak_framings": harmful_in(recipe.weak, stack=True),
        "eval_taught_framings": harmful_in(recipe.taught),
        "eval_benign": benign_in(recipe.eval_benign_framings, stack=True),
        "eval_alarming": benign_in(("direct",), alarming=True),
        "eval_heldout_benign": benign_in(recipe.eval_heldout_benign_framings),
    }
    for name, make in sets.items():
        reqs = unique_requests(erng, n, make, exclude=seen)
        seen |= {r.text for r in reqs}
        out[name] = [r.to_dict() for r in reqs]
    if recipe.dialogue:
        out.update(dialogue_sets(random.Random(f"{seed}-eval-dialogues"), n, recipe, seen))
    if recipe.benign_dialogues:  # over-refusal is measured on conversations too
        converse(out["eval_benign"], random.Random(f"{seed}-eval-benign-dialogues"), recipe)
    return out


# files whose texts feed some training (so held-out framings must never appear in them)
TRAINING_FILES: tuple[str, ...] = (
    "seeds",
    "benign",
    "sft_defender",
    "sft_attacker",
    "proxy_train",
)
# load_prompt_sets name -> file stem
PROMPT_SETS: dict[str, str] = {
    "seeds": "seeds",
    "benign": "benign",
    "heldout_framings": "eval_heldout_framings",
    "weak_framings": "eval_weak_framings",
    "taught_framings": "eval_taught_framings",
    "benign_eval": "eval_benign",
    "alarming": "eval_alarming",
    "heldout_benign": "eval_heldout_benign",
}
