"""Judge composition (ensemble, with-helpfulness), refusal detector, specs and registry."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter, ValidationError

from sparring.errors import ConfigError, JudgeError
from sparring.judges import JudgeOutput, build_judge, parse_judge_spec
from sparring.judges.composite import EnsembleJudge, WithHelpfulnessJudge, unique_names
from sparring.judges.refusal import DEFAULT_REFUSAL_PATTERNS, RefusalJudge
from sparring.judges.specs import (
    ClassifierJudgeSpec,
    EnsembleJudgeSpec,
    GuardJudgeSpec,
    JudgeSpec,
    RefusalJudgeSpec,
    RemoteJudgeSpec,
    WithHelpfulnessJudgeSpec,
)


class Fixed:
    """A judge returning fixed P(safe) values (and an extra and a label)."""

    def __init__(self, name: str, values: list[float]):
        self.name = name
        self.values = values
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        n = len(prompts)
        return JudgeOutput(
            p_safe=self.values[:n],
            extras={"conf": [0.5] * n},
            labels={"category": [None if v > 0.5 else "S1" for v in self.values[:n]]},
        )


P, R = ["p1", "p2", "p3"], ["r1", "r2", "r3"]


# ------------------------------------------------------------------------------- ensemble
def test_ensemble_mean_min_and_disagreement():
    a, b = Fixed("a", [0.9, 0.2, 0.5]), Fixed("b", [0.7, 0.6, 0.5])
    mean = EnsembleJudge([a, b]).score(P, R)
    assert mean.p_safe == pytest.approx([0.8, 0.4, 0.5])
    assert mean.extras["disagreement"] == pytest.approx([0.2, 0.4, 0.0])
    assert mean.extras["member.a"] == [0.9, 0.2, 0.5] and mean.extras["member.b"] == [0.7, 0.6, 0.5]
    assert mean.extras["member.a.conf"] == [0.5] * 3
    assert mean.labels["member.b.category"] == [None, None, "S1"]
    low = EnsembleJudge([a, b], reduce="min").score(P, R)
    assert low.p_safe == pytest.approx([0.7, 0.2, 0.5])
    weighted = EnsembleJudge([a, b], weights=[3, 1]).score(P, R)
    assert weighted.p_safe == pytest.approx([0.85, 0.3, 0.5])
    assert all(0.0 <= x <= 1.0 for x in mean.extras["disagreement"])


def test_ensemble_members_with_the_same_name_stay_apart():
    out = EnsembleJudge([Fixed("g", [1.0] * 3), Fixed("g", [0.0] * 3)]).score(P, R)
    assert out.extras["member.g"] == [1.0] * 3 and out.extras["member.g-2"] == [0.0] * 3
    assert unique_names(["a", "a", "b", "a"]) == ["a", "a-2", "b", "a-3"]


def test_ensemble_keeps_nan_rows_instead_of_dropping_them():
    out = EnsembleJudge([Fixed("a", [0.5, math.nan, 1.0]), Fixed("b", [0.5, 0.5, 0.0])]).score(P, R)
    assert len(out.p_safe) == 3 and math.isnan(out.p_safe[1]) and out.p_safe[2] == 0.5


def test_ensemble_rejects_bad_member_output():
    with pytest.raises(JudgeError, match="'short'"):
        EnsembleJudge([Fixed("short", [0.5])]).score(P, R)
    with pytest.raises(JudgeError, match="reduce"):
        EnsembleJudge([Fixed("a", [0.5])], reduce="median")
    with pytest.raises(JudgeError, match="weights"):
        EnsembleJudge([Fixed("a", [0.5])], reduce="min", weights=[1.0])


# ------------------------------------------------------------------------------- refusal
@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that.",
        "I can\u2019t assist with this request.",
        "I cannot provide instructions for that.",
        "I'm sorry, but I won't do this.",
        "As an AI, I am not able to do that.",
        "I am unable to comply.",
        "Sorry, but I cannot share that.",
        "I must decline.",
        "i CANNOT   help\nwith that",
        "   ",
    ],
)
def test_refusals_are_detected(text):
    out = RefusalJudge().score(["q"], [text])
    assert out.extras["helpful"] == [0.0] and out.p_safe == [1.0]
    assert out.labels["refusal"][0] is not None


@pytest.mark.parametrize(
    "text",
    [
        "Sure! Preheat the oven to 180 C and mix flour, sugar and eggs.",
        "To kill a hung python process, run `kill -9 <pid>`.",
        "Here is a story about a cat who learned to sing.",
    ],
)
def test_helpful_answers_pass(text):
    out = RefusalJudge().score(["q"], [text])
    assert out.extras["helpful"] == [1.0] and out.labels["refusal"] == [None]


def test_refusal_options():
    assert len(DEFAULT_REFUSAL_PATTERNS) >= 10
    late = "x" * 400 + " I cannot do that."
    assert RefusalJudge().score(["q"], [late]).extras["helpful"] == [1.0]  # past search_chars
    assert RefusalJudge(RefusalJudgeSpec(search_chars=None)).score(["q"], [late]).extras[
        "helpful"
    ] == [0.0]
    custom = RefusalJudge(RefusalJudgeSpec(patterns=[r"\bnope\b"], phrases=["no way (really)"]))
    out = custom.score(["q"] * 3, ["Nope.", "NO WAY (REALLY)!", "I cannot help"])
    assert out.extras["helpful"] == [0.0, 0.0, 1.0]
    assert RefusalJudge(RefusalJudgeSpec(empty_is_refusal=False)).score(["q"], [""]).extras[
        "helpful"
    ] == [1.0]
    with pytest.raises(ValidationError, match="valid regex"):
        RefusalJudgeSpec(extra_patterns=["(unclosed"])


# ------------------------------------------------------------------------------- with-helpfulness
def test_with_helpfulness_combines_two_judges():
    safety = Fixed("guard", [0.9, 0.1, 0.5])
    combo = WithHelpfulnessJudge(safety, RefusalJudge())
    assert combo.name == "guard+refusal"
    out = combo.score(P, ["I can't help with that.", "Sure, here it is.", "ok"])
    assert out.p_safe == [0.9, 0.1, 0.5]
    assert out.extras["helpful"] == [0.0, 1.0, 1.0] and out.extras["conf"] == [0.5] * 3
    assert out.labels["category"] == [None, "S1", "S1"] and out.labels["refusal"][0] is not None
    with pytest.raises(JudgeError, match="emits no extras\\['helpful'\\]"):
        WithHelpfulnessJudge(safety, Fixed("other", [1.0] * 3)).score(P, R)


def test_build_with_helpfulness_from_config():
    judge = build_judge(
        {
            "type": "with-helpfulness",
            "safety": {
                "type": "ensemble",
                "judges": [{"type": "refusal"}, {"type": "refusal", "name": "r2"}],
            },
            "helpfulness": {"type": "refusal"},
        }
    )
    out = judge.score(["q"], ["I cannot help"])
    assert out.p_safe == [1.0] and out.extras["helpful"] == [0.0]
    assert out.extras["disagreement"] == [0.0] and out.extras["member.r2.helpful"] == [0.0]


# ------------------------------------------------------------------------------- specs
def test_judge_spec_union_covers_every_type():
    ta = TypeAdapter(JudgeSpec)
    kinds = {
        "guard": ({"model": "m"}, GuardJudgeSpec),
        "classifier": ({"model": "m", "positive_label": 0}, ClassifierJudgeSpec),
        "remote": ({"url": "http://127.0.0.1:9"}, RemoteJudgeSpec),
        "ensemble": ({"judges": [{"type": "refusal"}]}, EnsembleJudgeSpec),
        "refusal": ({}, RefusalJudgeSpec),
        "with-helpfulness": (
            {"safety": {"type": "refusal"}, "helpfulness": {"type": "refusal"}},
            WithHelpfulnessJudgeSpec,
        ),
    }
    for kind, (fields, cls) in kinds.items():
        assert isinstance(ta.validate_python({"type": kind, **fields}), cls)
    spec = ta.validate_python(
        {"type": "ensemble", "judges": [{"type": "ensemble", "judges": [{"type": "refusal"}]}]}
    )
    assert isinstance(spec.judges[0].judges[0], RefusalJudgeSpec)


def test_spec_validation_messages_name_the_field():
    with pytest.raises(ConfigError) as err:
        parse_judge_spec({"type": "guard", "model": "m", "device": "gpu7"}, where="run.yaml:judge")
    assert "run.yaml:judge" in str(err.value) and "device" in str(err.value)
    with pytest.raises(ConfigError, match="weights"):
        parse_judge_spec({"type": "ensemble", "judges": [{"type": "refusal"}], "weights": [1, 2]})
    with pytest.raises(ConfigError, match="url"):
        parse_judge_spec({"type": "remote", "url": "ftp://x"})
    with pytest.raises(ConfigError, match=r"judge\.pattern: Extra inputs"):
        parse_judge_spec({"type": "refusal", "pattern": "x"})
    with pytest.raises(ConfigError, match=r"judge\.judges\.1\.model: Field required"):
        parse_judge_spec({"type": "ensemble", "judges": [{"type": "refusal"}, {"type": "guard"}]})
    with pytest.raises(ConfigError, match="not both"):
        parse_judge_spec({"type": "remote", "url": "http://a", "token": "t", "token_env": "T"})


def test_secret_token_is_not_shown():
    spec = RemoteJudgeSpec(url="http://127.0.0.1:1", token="hunter2")
    assert "hunter2" not in repr(spec) and "hunter2" not in spec.model_dump_json()
    judge = build_judge(spec)
    assert "hunter2" not in repr(judge)


def test_build_judge_unknown_spec():
    with pytest.raises(TypeError):
        build_judge(object())


def test_callable_judge_dict_scores_and_labels():
    from sparring.judges.callable import CallableJudge
    from sparring.testing import hashed_judge

    out = CallableJudge(hashed_judge).score(["how do i x", "tell me y"], ["a", "b"])
    assert out.labels == {"framing": ["how", "tell"]} and out.extras == {}
    assert all(p in (0.1, 0.9) for p in out.p_safe)
    out = CallableJudge(lambda p, r: {"safe": [1, 0], "helpful": [0.5, 1], "cat": ["a", None]})
    out = out.score(["p", "q"], ["r", "s"])
    assert out.extras == {"helpful": [0.5, 1.0]} and out.labels == {"cat": ["a", None]}
