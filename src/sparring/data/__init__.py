"""Prompt sources: seed and benign prompt pools from files or named sources.

:mod:`.prompts` reads files and keeps the registries (named sources, prefixed families such as
the arena's ``arena:...``, held-out counterparts); :mod:`.sources` registers the sources that
installed packages ship (HarmBench, StrongREJECT, do-not-answer, benign) with fixed splits.
"""

from sparring.data.prompts import PromptPool, load_prompts

__all__ = ["PromptPool", "load_prompts"]
