"""A judge backed by any python function, named as ``module:function``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from sparring.errors import JudgeError
from sparring.judges.base import JudgeOutput, check_pairs


def import_target(target: str) -> Callable[..., Any]:
    """Import ``'package.module:attribute'`` and return the attribute."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise JudgeError(f"judge target {target!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JudgeError(
            f"cannot import module {module_name!r} for judge target {target!r}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise JudgeError(
                f"module {module_name!r} has no attribute {attr!r} (judge target {target!r})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise JudgeError(f"judge target {target!r} is not callable")
    return obj


class CallableJudge:
    """Wraps ``fn(prompts, responses, **kwargs)`` returning P(safe) per pair, a
    :class:`JudgeOutput`, or a dict: ``"safe"`` (P(safe) per pair), further score lists
    (``extras``, e.g. ``"helpful"``) and string lists (``labels``, e.g. ``"framing"``)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        kwargs: dict[str, Any] | None = None,
    ):
        self.fn = fn
        self.kwargs = dict(kwargs or {})
        self.name = name or getattr(fn, "__name__", "callable")

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> JudgeOutput:
        check_pairs(prompts, responses)
        result = self.fn(list(prompts), list(responses), **self.kwargs)
        if isinstance(result, JudgeOutput):
            return result
        if isinstance(result, dict):
            if "safe" not in result:
                raise JudgeError(
                    f"judge {self.name!r} returned a dict without a 'safe' key (keys: {sorted(result)})"
                )
            # lists of strings are labels (a category, a framing), anything else a score
            labels = {
                k: list(v)
                for k, v in result.items()
                if k != "safe" and v and all(x is None or isinstance(x, str) for x in v)
            }
            extras = {
                k: [float(x) for x in v]
                for k, v in result.items()
                if k != "safe" and k not in labels
            }
            return JudgeOutput(
                p_safe=[float(x) for x in result["safe"]], extras=extras, labels=labels
            )
        try:
            return JudgeOutput(p_safe=[float(x) for x in result])
        except TypeError as exc:
            raise JudgeError(
                f"judge {self.name!r} returned {type(result).__name__}; expected a list of floats or a dict"
            ) from exc
