"""The arena, registered the way any plug-in is (see :mod:`sparring.plugins`): its judge
(``judge: {type: arena}``), its ``arena:`` model names and prompt sets, and the held-out benign
set over-refusal is measured on when a run trains on ``arena:benign``."""

from __future__ import annotations

from sparring.arena import refs
from sparring.data.prompts import register_heldout, register_prefix
from sparring.judges.registry import register_judge
from sparring.judges.specs import ArenaJudgeSpec
from sparring.models.registry import register_model_prefix


def build_judge(spec: ArenaJudgeSpec):
    from sparring.arena.judge import ArenaJudge

    root = spec.arena if spec.arena is not None else refs.current_arena(size=spec.size).root
    return ArenaJudge(spec.kind, root, name=spec.name)


register_judge(ArenaJudgeSpec, build_judge)
for prefix in refs.PREFIXES:
    register_prefix(prefix, refs.prompts)
    register_model_prefix(prefix, refs.model_path)
    register_heldout(f"{prefix}benign", f"{prefix}benign_unseen")
