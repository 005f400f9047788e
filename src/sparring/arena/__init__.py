"""The arena: a small synthetic chat world with tiny players and a known ground truth.

``sparring train`` with no arguments plays the game here on a CPU in minutes. Because the truth
is known, the arena also measures true attack success, reward hacking and exploitability.

Public API::

    paths = ensure_arena(seed=0)            # build once into the cache, then reuse
    paths = build_arena(out_dir, seed=0)    # rebuild anywhere
    ArenaJudge("proxy" | "gold", paths.root)
    load_prompt_sets(paths.root)            # named prompt sets
    gold_metrics(prompts, responses)        # ASR, over-refusal, per-framing ASR, drift
"""

from sparring.arena.build import (
    ARENA_VERSION,
    ArenaPaths,
    arena_home,
    build_arena,
    ensure_arena,
    is_built,
    load_prompt_sets,
)
from sparring.arena.judge import ArenaJudge
from sparring.arena.oracle import Verdict, gold_metrics, parse_prompt, parse_response
from sparring.arena.oracle import judge as oracle_verdict
from sparring.arena.world import (
    ATTACKER_TEMPLATE,
    DEFENDER_TEMPLATE,
    HELDOUT_FRAMINGS,
    TAUGHT_FRAMINGS,
    WEAK_FRAMINGS,
)

__all__ = [
    "ARENA_VERSION",
    "ATTACKER_TEMPLATE",
    "ArenaJudge",
    "ArenaPaths",
    "DEFENDER_TEMPLATE",
    "HELDOUT_FRAMINGS",
    "TAUGHT_FRAMINGS",
    "Verdict",
    "WEAK_FRAMINGS",
    "arena_home",
    "build_arena",
    "ensure_arena",
    "gold_metrics",
    "is_built",
    "load_prompt_sets",
    "oracle_verdict",
    "parse_prompt",
    "parse_response",
]
