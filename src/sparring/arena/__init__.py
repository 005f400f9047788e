"""The arena: a small synthetic chat world with tiny players and a known ground truth.

``sparring train`` with no arguments plays the game here on a CPU in minutes. Because the truth
is known, the arena also measures true attack success, reward hacking and exploitability.

Public API::

    paths = ensure_arena(seed=0)            # build once into the cache, then reuse
    paths = build_arena(out_dir, seed=0)    # rebuild anywhere
    ArenaJudge("proxy" | "gold", paths.root)
    load_prompt_sets(paths.root)            # named prompt sets
    gold_metrics(prompts, responses)        # ASR, over-refusal, per-framing ASR, drift

Names are imported lazily, so ``sparring.arena.oracle`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARENA_VERSION": "build",
    "ArenaPaths": "build",
    "arena_home": "build",
    "build_arena": "build",
    "ensure_arena": "build",
    "is_built": "build",
    "load_prompt_sets": "build",
    "ArenaJudge": "judge",
    "Verdict": "oracle",
    "gold_metrics": "oracle",
    "parse_prompt": "oracle",
    "parse_response": "oracle",
    "ATTACKER_TEMPLATE": "world",
    "DEFENDER_TEMPLATE": "world",
    "HELDOUT_FRAMINGS": "world",
    "TAUGHT_FRAMINGS": "world",
    "WEAK_FRAMINGS": "world",
}
_ALIASES = {"oracle_verdict": ("oracle", "judge")}

__all__ = sorted([*_EXPORTS, *_ALIASES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name], name
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
    else:
        raise AttributeError(f"module 'sparring.arena' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sparring.arena.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
