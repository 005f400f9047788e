"""Judges: score (prompt, response) pairs with P(safe) (and helpfulness for benign prompts).

Every judge has its own tokenizer (if any) and sees plain text only. Types: ``callable``,
``guard``, ``classifier``, ``remote``, ``ensemble``, ``refusal``, ``with-helpfulness``,
``embedding``, and plug-ins' own (``arena``); see :mod:`sparring.judges.specs`,
:func:`sparring.judges.registry.register_judge` and docs/judges.md. The HTTP server lives in
:mod:`sparring.judges.serve` (needs the ``serve`` extra: fastapi, uvicorn).
"""

from sparring.judges.base import Judge, JudgeOutput, check_pairs, validate_output
from sparring.judges.registry import build_judge, parse_judge_spec
from sparring.judges.specs import JudgeSpec

__all__ = [
    "Judge",
    "JudgeOutput",
    "JudgeSpec",
    "build_judge",
    "check_pairs",
    "parse_judge_spec",
    "validate_output",
]
