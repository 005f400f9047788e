"""Sparring: align language models with a two-player game (GPO).

The public API (:mod:`sparring.api`) is exported here, loaded on first use so that
``import sparring`` stays light::

    import sparring

    run = sparring.train("configs/arena.yaml", ["game.rounds=2"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: the stable names: each lives in :mod:`sparring.api`
__all__ = ["Run", "evaluate", "load_config", "load_run", "scan", "train", "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from sparring.api import Run, evaluate, load_config, load_run, scan, train  # noqa: F401


def __getattr__(name: str) -> Any:
    """PEP 562: the API's names, imported from :mod:`sparring.api` when first asked for."""
    if name in __all__ and name != "__version__":
        return getattr(importlib.import_module("sparring.api"), name)
    raise AttributeError(f"module 'sparring' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
