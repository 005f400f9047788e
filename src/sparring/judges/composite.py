"""Judges made of other judges: ensembles and safety + helpfulness pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sparring.errors import JudgeError
from sparring.judges.base import Judge, JudgeOutput, check_pairs, validate_output


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats made unique by a ``-2``, ``-3``... suffix."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0) + 1
        seen[name] = k
        out.append(name if k == 1 else f"{name}-{k}")
    return out


class EnsembleJudge:
    """P(safe) of several judges combined by ``mean`` (optionally weighted) or ``min``.

    ``extras["member.<name>"]`` holds each member's P(safe), ``extras["disagreement"]`` the
    spread max - min across members (0 when they agree), ``extras``/``labels`` of members appear
    as ``member.<name>.<key>``.
    """

    def __init__(
        self,
        judges: Sequence[Judge],
        *,
        reduce: str = "mean",
        weights: Sequence[float] | None = None,
        name: str = "ensemble",
    ):
        if not judges:
            raise JudgeError("an ensemble needs at least one judge")
        if reduce not in ("mean", "min"):
            raise JudgeError(f"ensemble {name!r}: reduce must be 'mean' or 'min', not {reduce!r}")
        if weights is not None:
            if reduce != "mean" or len(weights) != len(judges) or sum(weights) <= 0:
                raise JudgeError(
                    f"ensemble {name!r}: weights need reduce: mean, one per judge, sum > 0"
                )
            if any(w < 0 for w in weights):
                raise JudgeError(f"ensemble {name!r}: weights must be >= 0")
        self.judges = list(judges)
        self.reduce = reduce
        total = float(sum(weights)) if weights is not None else float(len(judges))
        self.weights = (
            [float(w) / total for w in weights] if weights else [1.0 / total] * len(judges)
        )
        self.name = name
        self.member_names = unique_names([j.name for j in self.judges])

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> JudgeOutput:
        check_pairs(prompts, responses)
        n = len(prompts)
        outputs = []
        for judge, mname in zip(self.judges, self.member_names, strict=True):
            out = judge.score(prompts, responses)
            outputs.append(validate_output(mname, out, n, allow_nonfinite=True))
        extras: dict[str, list[float]] = {}
        labels: dict[str, list[str | None]] = {}
        for mname, out in zip(self.member_names, outputs, strict=True):
            extras[f"member.{mname}"] = [float(x) for x in out.p_safe]
            for key, values in out.extras.items():
                extras[f"member.{mname}.{key}"] = list(values)
            for key, lvalues in out.labels.items():
                labels[f"member.{mname}.{key}"] = list(lvalues)
        p_safe, spread = [], []
        for i in range(n):
            col = [float(o.p_safe[i]) for o in outputs]
            if not all(math.isfinite(x) for x in col):
                p_safe.append(math.nan)  # the game loop skips non-finite rewards
                spread.append(math.nan)
                continue
            if self.reduce == "min":
                p_safe.append(min(col))
            else:
                p_safe.append(
                    min(1.0, max(0.0, sum(w * x for w, x in zip(self.weights, col, strict=True))))
                )
            spread.append(max(col) - min(col))
        extras["disagreement"] = spread
        return JudgeOutput(p_safe=p_safe, extras=extras, labels=labels)


class WithHelpfulnessJudge:
    """P(safe), extras and labels from ``safety``; ``extras["helpful"]`` from ``helpfulness``.

    Labels of the helpfulness judge are added under their own names unless the safety judge
    already uses that name, in which case they get a ``helpfulness.`` prefix.
    """

    def __init__(self, safety: Judge, helpfulness: Judge, *, name: str | None = None):
        self.safety = safety
        self.helpfulness = helpfulness
        self.name = name or f"{safety.name}+{helpfulness.name}"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> JudgeOutput:
        check_pairs(prompts, responses)
        n = len(prompts)
        safe = validate_output(
            self.safety.name, self.safety.score(prompts, responses), n, allow_nonfinite=True
        )
        helpful = validate_output(
            self.helpfulness.name,
            self.helpfulness.score(prompts, responses),
            n,
            allow_nonfinite=True,
        )
        if "helpful" not in helpful.extras:
            raise JudgeError(
                f"judge {self.name!r}: its helpfulness judge {self.helpfulness.name!r} emits no "
                f"extras['helpful'] (it emits {sorted(helpful.extras)}); use type: refusal or a "
                f"classifier with emit: helpful"
            )
        extras = {k: list(v) for k, v in safe.extras.items() if k != "helpful"}
        extras["helpful"] = list(helpful.extras["helpful"])
        labels = {k: list(v) for k, v in safe.labels.items()}
        for key, values in helpful.labels.items():
            labels[key if key not in labels else f"helpfulness.{key}"] = list(values)
        return JudgeOutput(p_safe=list(safe.p_safe), extras=extras, labels=labels)
