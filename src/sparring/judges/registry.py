"""Build a judge from its configuration.

Model-backed judges import torch/transformers only when built, so configs that use remote,
callable or refusal judges load without them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sparring.errors import ConfigError
from sparring.judges.base import Judge
from sparring.judges.callable import CallableJudge, import_target
from sparring.judges.fingerprint import judge_files
from sparring.judges.specs import (
    CallableJudgeSpec,
    ClassifierJudgeSpec,
    EmbeddingJudgeSpec,
    EnsembleJudgeSpec,
    GuardJudgeSpec,
    JudgeSpec,
    OpenAIJudgeSpec,
    RefusalJudgeSpec,
    RemoteJudgeSpec,
    WithHelpfulnessJudgeSpec,
)

_ADAPTER: TypeAdapter[Any] = TypeAdapter(JudgeSpec)
_TAGS = {
    "callable",
    "guard",
    "classifier",
    "remote",
    "ensemble",
    "refusal",
    "with-helpfulness",
    "embedding",
    "openai",
    "arena",
}


def parse_judge_spec(data: Mapping[str, Any] | Any, *, where: str = "judge") -> Any:
    """Validate a mapping into a :data:`JudgeSpec`; ConfigError names the failing fields."""
    if not isinstance(data, Mapping):
        return data
    try:
        return _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            # drop the union tags pydantic puts in locations ("judge.guard.device" -> "judge.device")
            parts = [str(x) for x in err["loc"] if str(x) not in _TAGS]
            loc = ".".join([where, *parts])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError(f"invalid judge configuration in {where}:\n" + "\n".join(lines)) from None


def _callable(spec: CallableJudgeSpec) -> Judge:
    return CallableJudge(
        import_target(spec.target), name=spec.name or spec.target, kwargs=spec.kwargs
    )


def _guard(spec: GuardJudgeSpec) -> Judge:
    from sparring.judges.guard import GuardJudge

    return GuardJudge(spec)


def _classifier(spec: ClassifierJudgeSpec) -> Judge:
    from sparring.judges.classifier import ClassifierJudge

    return ClassifierJudge(spec)


def _remote(spec: RemoteJudgeSpec) -> Judge:
    from sparring.judges.remote import RemoteJudge

    return RemoteJudge(spec)


def _ensemble(spec: EnsembleJudgeSpec) -> Judge:
    from sparring.judges.composite import EnsembleJudge

    members = [build_judge(s) for s in spec.judges]
    return EnsembleJudge(
        members, reduce=spec.reduce, weights=spec.weights, name=spec.name or "ensemble"
    )


def _refusal(spec: RefusalJudgeSpec) -> Judge:
    from sparring.judges.refusal import RefusalJudge

    return RefusalJudge(spec)


def _with_helpfulness(spec: WithHelpfulnessJudgeSpec) -> Judge:
    from sparring.judges.composite import WithHelpfulnessJudge

    return WithHelpfulnessJudge(
        build_judge(spec.safety), build_judge(spec.helpfulness), name=spec.name
    )


def _embedding(spec: EmbeddingJudgeSpec) -> Judge:
    from sparring.judges.embedding import build

    return build(spec)


def _openai(spec: OpenAIJudgeSpec) -> Judge:
    from sparring.judges.llm import LLMJudge

    return LLMJudge(spec)


BUILDERS: dict[type, Callable[[Any], Judge]] = {
    OpenAIJudgeSpec: _openai,
    EmbeddingJudgeSpec: _embedding,
    CallableJudgeSpec: _callable,
    GuardJudgeSpec: _guard,
    ClassifierJudgeSpec: _classifier,
    RemoteJudgeSpec: _remote,
    EnsembleJudgeSpec: _ensemble,
    RefusalJudgeSpec: _refusal,
    WithHelpfulnessJudgeSpec: _with_helpfulness,
}


def register_judge(spec_type: type, builder: Callable[[Any], Judge]) -> None:
    """Build judges of ``spec_type`` with ``builder`` (a plug-in's judge; see
    :mod:`sparring.plugins`)."""
    BUILDERS[spec_type] = builder


def build_judge(spec: object) -> Judge:
    """Instantiate the judge described by ``spec`` (one of :data:`sparring.judges.specs.JudgeSpec`,
    or a mapping that validates as one)."""
    spec = parse_judge_spec(spec) if isinstance(spec, Mapping) else spec
    builder = BUILDERS.get(type(spec))
    if builder is None:
        from sparring.plugins import load_plugins

        load_plugins()
        builder = BUILDERS.get(type(spec))
    if builder is None:
        raise TypeError(f"no builder for judge spec {type(spec).__name__}")
    judge = builder(spec)
    # which files this judge is (sparring.judges.fingerprint), recorded with its figures; a
    # plugin's judge may take no attributes
    with contextlib.suppress(AttributeError):
        judge.files = judge_files(spec)
    return judge


def judge_from_file(path: str | Path, option: str = "--judge") -> Judge:
    """The judge a YAML file describes: a judge spec (a mapping with ``type``), or a run
    config whose ``judge`` is one. ``option`` names the flag in errors."""
    from sparring.config_load import read_yaml_block

    data = read_yaml_block(
        path, "judge", option=option, expected="a judge spec (a mapping with 'type')"
    )
    try:
        return build_judge(data)
    except ValueError as exc:
        raise ConfigError(f"{option} {path}: {exc}") from None
