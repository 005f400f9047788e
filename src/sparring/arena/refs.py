"""``arena:<name>`` references, so that configs name arena parts without knowing the cache path.

- models: ``arena:attacker``, ``arena:defender`` (``attacker.model`` / ``defender.model``);
- prompt sets: ``arena:seeds``, ``arena:benign``, ``arena:heldout_framings``, ... (``source:``
  of a prompt source; see :func:`sparring.arena.load_prompt_sets` for the names);
- the judge: ``judge: {type: arena, kind: proxy | gold}``.

They resolve against the arena in the cache (built on first use) chosen by the environment
variables ``SPARRING_ARENA_SEED`` (default 0) and ``SPARRING_ARENA_SIZE`` (``default`` or
``tiny``), or against an explicit folder in ``SPARRING_ARENA_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparring.errors import ConfigError, DataError

PREFIX = "arena:"
MODELS = ("attacker", "defender")


def current_arena(progress: bool = True):
    """The ArenaPaths the environment selects, built into the cache when missing."""
    from sparring.arena.build import ArenaPaths, ensure_arena, is_built

    explicit = os.environ.get("SPARRING_ARENA_DIR")
    if explicit:
        if not is_built(explicit):
            raise DataError(
                f"SPARRING_ARENA_DIR={explicit} holds no built arena (sparring arena build --out DIR)"
            )
        return ArenaPaths(Path(explicit))
    try:
        seed = int(os.environ.get("SPARRING_ARENA_SEED", "0"))
    except ValueError:
        raise ConfigError("SPARRING_ARENA_SEED must be an integer") from None
    size = os.environ.get("SPARRING_ARENA_SIZE", "default")
    return ensure_arena(seed, size=size, progress=progress)


def model_path(ref: str) -> Path:
    name = ref[len(PREFIX) :]
    if name not in MODELS:
        raise ConfigError(
            f"unknown arena model {ref!r}; expected one of {[PREFIX + m for m in MODELS]}"
        )
    return getattr(current_arena(), name)


def prompts(ref: str) -> list[str]:
    from sparring.arena.build import load_prompt_sets

    name = ref[len(PREFIX) :]
    sets = load_prompt_sets(current_arena().root)
    if name not in sets:
        raise DataError(
            f"unknown arena prompt set {ref!r}; known: {', '.join(PREFIX + s for s in sets)}"
        )
    return [row["prompt"] for row in sets[name]]
