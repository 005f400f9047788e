"""``arena:<name>`` references, so that configs name arena parts without knowing the cache path.

- models: ``arena:attacker``, ``arena:defender`` (``attacker.model`` / ``defender.model``);
- prompt sets: ``arena:seeds``, ``arena:benign``, ``arena:heldout_framings``, ... (``source:``
  of a prompt source; see :func:`sparring.arena.load_prompt_sets` for the names), and
  ``arena:benign_unseen``: ``benign_eval`` less any prompt found in a training file (the
  held-out benign set over-refusal is measured on);
- the judge: ``judge: {type: arena, kind: proxy | gold}``.

They resolve against the arena in the cache (built on first use) chosen by the environment
variables ``SPARRING_ARENA_SEED`` (default 0) and ``SPARRING_ARENA_SIZE`` (``default``,
``hard`` or ``tiny``), or against an explicit folder in ``SPARRING_ARENA_DIR``.

``arena-hard:<name>`` (and ``judge: {type: arena, size: hard}``) names the same parts of the
hard world (docs/arena.md, "The hard world"), whatever ``SPARRING_ARENA_SIZE`` says.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparring.errors import ConfigError, DataError

PREFIX = "arena:"
#: prefix -> the world it names (None: the one ``SPARRING_ARENA_SIZE`` selects)
PREFIXES: dict[str, str | None] = {
    PREFIX: None,
    "arena-hard:": "hard",
    "arena-dialogue:": "dialogue",
}
MODELS = ("attacker", "defender")


def _split(ref: str) -> tuple[str, str, str | None]:
    """(prefix, name, size) of a reference: ``arena-hard:seeds`` -> (.., "seeds", "hard")."""
    prefix = next(p for p in PREFIXES if ref.startswith(p))
    return prefix, ref[len(prefix) :], PREFIXES[prefix]


def current_arena(progress: bool = True, size: str | None = None):
    """The ArenaPaths the environment selects (of world ``size`` when given), built into the
    cache when missing."""
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
    size = size or os.environ.get("SPARRING_ARENA_SIZE", "default")
    return ensure_arena(seed, size=size, progress=progress)


def model_path(ref: str) -> Path:
    prefix, name, size = _split(ref)
    if name not in MODELS:
        raise ConfigError(
            f"unknown arena model {ref!r}; expected one of {[prefix + m for m in MODELS]}"
        )
    return getattr(current_arena(size=size), name)


#: derived sets: a prompt set less every prompt that occurs in any training file
UNSEEN = {"benign_unseen": "benign_eval"}


def prompts(ref: str) -> list[str]:
    from sparring.arena.build import load_prompt_sets

    prefix, name, size = _split(ref)
    arena = current_arena(size=size)
    sets = load_prompt_sets(arena.root)
    if name in UNSEEN:
        seen = training_texts(arena)
        return [row["prompt"] for row in sets[UNSEEN[name]] if row["prompt"] not in seen]
    if name not in sets:
        known = [*sets, *UNSEEN]
        raise DataError(
            f"unknown arena prompt set {ref!r}; known: {', '.join(prefix + s for s in known)}"
        )
    return [row["prompt"] for row in sets[name]]


def training_texts(arena) -> set[str]:
    """Every text of every file that trains something in the arena (the players' SFT data, the
    seed and benign pools the game trains on, the proxy judge's training data)."""
    import json

    from sparring.arena.data import TRAINING_FILES

    out: set[str] = set()
    for stem in TRAINING_FILES:
        with arena.data_file(stem).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.update(v for v in json.loads(line).values() if isinstance(v, str))
    return out
