"""Plug-ins: modules that register judges, prompt sources and model names when imported.

The registries (:func:`sparring.judges.registry.register_judge`,
:func:`sparring.data.prompts.register_prefix`, :func:`register_model_prefix` here, which
players and judge models alike resolve through) know no plug-in by name: on a name they do not hold, they call :func:`load_plugins`, which imports
the built-in plug-ins (the arena) and every entry point of the ``sparring.plugins`` group, so a
package of your own adds a world, a judge or a prompt source without touching Sparring::

    # pyproject.toml of your package
    [project.entry-points."sparring.plugins"]
    myworld = "myworld.sparring_plugin"     # a module that calls the register_* functions

A leaf: it imports nothing of Sparring's (the plug-ins are imported by name).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

#: Plug-ins shipped with Sparring, imported like any other: the model cache's ``sparring:``
#: names, then the arena.
BUILTIN = ("sparring.models.registry", "sparring.arena.plugin")
GROUP = "sparring.plugins"

_loaded = False


def load_plugins() -> None:
    """Import every plug-in once (built-in, then entry points, each name once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    seen = set(BUILTIN)
    for name in BUILTIN:
        importlib.import_module(name)
    for ep in entry_points(group=GROUP):
        if ep.value in seen:
            continue
        seen.add(ep.value)
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in names itself, and the others still load
            import warnings

            warnings.warn(
                f"sparring plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2
            )


#: Model-name families (``model: "<prefix><name>"``) -> resolver of the whole name to a folder.
MODEL_PREFIXES: dict[str, Callable[[str], Path]] = {}


def register_model_prefix(prefix: str, resolver: Callable[[str], Path]) -> None:
    """Make ``model: "<prefix><name>"`` resolve through ``resolver``, for players and judge
    models alike (the model cache's ``sparring:``, a plug-in's models such as ``arena:``)."""
    MODEL_PREFIXES[prefix] = resolver


def resolve_reference(name: str) -> Path | None:
    """The local folder a prefixed model name stands for (built on first use), or None when
    ``name`` carries no registered prefix."""
    if ":" not in name:
        return None
    load_plugins()
    for prefix, resolver in MODEL_PREFIXES.items():
        if name.startswith(prefix):
            return resolver(name)
    return None
