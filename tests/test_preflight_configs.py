"""Every run config shipped and every run-config snippet in README.md and docs/*.md passes
validation *and* the game's preflight, so that a documented config cannot fail after its models
have loaded.

"Preflight" is everything ``Game(cfg)`` checks before it trains: the seed and benign prompts
load, the judge scores two test pairs and returns what the game needs (``game.benign`` needs
``extras[score_key]``, helpfulness), the players load (LoRA, dtype, gradient checkpointing),
pools and the probe start; and, when the run evaluates, its evaluation prompt sets resolve
(:func:`sparring.evaluation.evaluate.plan_evaluation`, what the evaluation reads first).

Stand-ins keep it to seconds per config: players are tiny local models (the config's LoRA,
dtype and RL settings kept; CPU, no mixed precision), ``sparring:``/``arena:`` model names are
checked to resolve, the arena is a tiny one built here, and every judge that needs a model or a
server is a stand-in of the *same output shape* (:data:`STAND_IN_SHAPES`): a bare ``guard``
returns no ``helpful``, so a config that pairs it with ``game.benign`` fails here as it would
after loading Llama Guard; composite judges (``with-helpfulness``, ``ensemble``) and the cheap
ones (``refusal``, ``callable``, ``arena``) are the real ones.

Snippets are read from the docs when the tests are collected, so snippets added later are
covered too. A snippet that is only part of a run config (a ``judge:`` block, a ``game:`` block,
a judge spec, a ``helpfulness:`` block) is merged into :data:`BASE` first.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from sparring.config import RunConfig, load_config
from sparring.judges.base import JudgeOutput, check_pairs
from sparring.judges.specs import (
    CallableJudgeSpec,
    ClassifierJudgeSpec,
    EmbeddingJudgeSpec,
    GuardJudgeSpec,
    JudgeSpec,
    OpenAIJudgeSpec,
    RemoteJudgeSpec,
    WithHelpfulnessJudgeSpec,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name not in ("accelerate", "judges")
) + sorted((ROOT / "src" / "sparring" / "configs").glob("*.yaml"))
#: judge spec files (``--judge FILE``, ``eval_judge``): each passes as the judge of a run
JUDGE_SPECS = sorted((ROOT / "configs" / "judges").glob("*.yaml"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# -- stand-in judges ---------------------------------------------------------------------------

#: For each judge type that needs a model or a server: (extras, labels) its real judge returns,
#: read from its implementation (sparring.judges.guard/classifier/embedding/llm/remote).
STAND_IN_SHAPES = {
    # GuardJudge.score: extras verdict_mass; labels category when spec.categories
    GuardJudgeSpec: lambda s: (["verdict_mass"], ["category"] if s.categories else []),
    # ClassifierJudge.score: emit helpful -> p_safe 1.0 and extras helpful; else p_safe only
    ClassifierJudgeSpec: lambda s: (["helpful"] if s.emit == "helpful" else [], []),
    # EmbeddingJudge.score: P(safe) from the unsafe head, extras helpful from the helpful head
    EmbeddingJudgeSpec: lambda s: (["helpful"], []),
    # LLMJudge.score: labels judge_answer
    OpenAIJudgeSpec: lambda s: ([], ["judge_answer"]),
    # RemoteJudge: whatever the served judge returns; only P(safe) is certain
    RemoteJudgeSpec: lambda s: ([], []),
}


def _stand_in_name(spec: Any) -> str:
    """The name the real judge would take (ensemble keys are built from member names)."""
    from sparring.judges._hf import default_name

    if spec.name:
        return spec.name
    if isinstance(spec, GuardJudgeSpec | ClassifierJudgeSpec):
        return default_name(spec.model)
    if isinstance(spec, EmbeddingJudgeSpec):
        return f"embedding:{Path(spec.path).name}"
    if isinstance(spec, OpenAIJudgeSpec):
        return f"{spec.rubric}:{spec.model}"
    return "remote" if isinstance(spec, RemoteJudgeSpec) else "callable"


class StandInJudge:
    """P(safe) plus exactly the extras and labels the real judge of a spec returns."""

    def __init__(self, spec: Any, extras: Sequence[str] = (), labels: Sequence[str] = ()):
        self.spec = spec
        self.name = _stand_in_name(spec)
        self.extras, self.labels = list(extras), list(labels)
        helpfulness_only = isinstance(spec, ClassifierJudgeSpec) and spec.emit == "helpful"
        self.p_safe = 1.0 if helpfulness_only else 0.5

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> JudgeOutput:
        check_pairs(prompts, responses)
        n = len(prompts)
        return JudgeOutput(
            p_safe=[self.p_safe] * n,
            extras={k: [0.5] * n for k in self.extras},
            labels={k: [None] * n for k in self.labels},
        )


def stand_in_builders(real: dict) -> dict:
    """Builders of a stand-in for every judge that loads a model or calls a server (to set in
    ``real``, the judge registry's BUILDERS; composite judges build their members through it)."""
    builders = {
        spec_type: (lambda spec, shape=shape: StandInJudge(spec, *shape(spec)))
        for spec_type, shape in STAND_IN_SHAPES.items()
    }
    build_callable = real[CallableJudgeSpec]

    def callable_judge(spec: CallableJudgeSpec):
        # a placeholder module of the docs (my_package.judges:score) returns what the user's
        # function returns: only P(safe) is certain; an installed module is imported for real
        module = spec.target.partition(":")[0]
        if module and importlib.util.find_spec(module.split(".")[0]) is None:
            return StandInJudge(spec)
        return build_callable(spec)

    builders[CallableJudgeSpec] = callable_judge
    return builders


# -- snippets ----------------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?:ya?ml)\s*$")


def yaml_blocks(path: Path) -> list[tuple[int, str]]:
    """(line of the opening fence, text) of every fenced yaml block of a markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence, indent = i, m["fence"], len(m["indent"])
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        out.append((start + 1, "\n".join(body)))
        i += 1
    return out


#: A small complete run the partial snippets are merged into (players and judges replaced by
#: stand-ins in any case); a snippet's own ``judge``/``eval_judge`` replaces the base one whole.
BASE: dict[str, Any] = {
    "name": "snippet",
    "attacker": {"model": "path/to/attacker"},
    "defender": {"model": "path/to/defender"},
    "judge": {"type": "guard", "model": "path/to/guard"},
    "game": {"rounds": 1, "batch_size": 2, "seeds": {"source": "harmbench-train"}},
}
#: Benign prompts for snippets whose judge is there to score helpfulness (``with-helpfulness``,
#: a ``helpfulness:`` block) when the snippet gives no ``game``: what such a judge is for.
BASE_BENIGN = {"prompts": {"source": "benign-train"}, "fraction": 0.25}

_RUN_KEYS = set(RunConfig.model_fields)
#: every judge type (the ``type`` of each member of the JudgeSpec union)
_JUDGE_TYPES = {m.model_fields["type"].default for m in get_args(get_args(JudgeSpec)[0])}


#: blocks a snippet gives whole (a judge spec, a prompt source): never merged key by key
_WHOLE = {"judge", "eval_judge", "seeds", "benign", "prompts"}


def _merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` written over it, section by section."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _WHOLE:
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def as_run_config(snippet: Any) -> tuple[dict | None, str]:
    """The run config a snippet stands for (merged into BASE when partial), or None and why
    it is not one."""
    if not isinstance(snippet, dict) or not snippet:
        return None, f"not a mapping ({type(snippet).__name__})"
    keys = set(snippet)
    if keys & _RUN_KEYS:
        partial = snippet
    elif snippet.get("type") in _JUDGE_TYPES:  # a judge spec file (serve-judge)
        partial = {"judge": snippet}
    elif keys <= set(WithHelpfulnessJudgeSpec.model_fields) - {"type"}:  # helpfulness: ...
        partial = {"judge": {"type": "with-helpfulness", "safety": BASE["judge"], **snippet}}
    elif keys <= set(GuardJudgeSpec.model_fields) - {"type", "model"}:  # guard fields alone
        partial = {"judge": {**BASE["judge"], **snippet}}
    elif {"model", "base_url"} <= keys:  # a target file: a served model as the defender
        from sparring.endpoints.spec import read_target_file

        path = Path(tempfile.mkdtemp()) / "target.yaml"
        path.write_text(yaml.safe_dump(snippet), encoding="utf-8")
        partial = {"defender": read_target_file(path), "game": {"mode": "attacker"}}
    else:
        return None, f"not a run config (keys: {', '.join(sorted(map(str, keys)))})"
    judge = partial.get("judge")
    base = BASE
    if (
        "game" not in partial
        and isinstance(judge, dict)
        and judge.get("type") == "with-helpfulness"
    ):
        base = _merge(BASE, {"game": {"benign": BASE_BENIGN}})
    return _merge(base, partial), ""


def _snippet_params() -> list:
    params = []
    for doc in DOCS:
        for line, text in yaml_blocks(doc):
            where = f"{doc.relative_to(ROOT)}:{line}"
            try:
                snippet = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                params.append(pytest.param(None, f"invalid YAML: {exc}", id=where))
                continue
            data, why = as_run_config(snippet)
            marks = [] if data is not None else [pytest.mark.skip(reason=why)]
            params.append(pytest.param(data, None, id=where, marks=marks))
    return params


# -- preflight ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_arena(tmp_path_factory):
    """A tiny arena (seconds to build) that every ``arena:``/``arena-hard:``/``arena-dialogue:``
    name resolves to: the tiny dialogue world holds every prompt set the others do, and its
    conversations too."""
    from sparring.arena.build import build_arena

    return build_arena(
        tmp_path_factory.mktemp("arena") / "tiny", seed=0, size="tiny-dialogue", progress=False
    )


@pytest.fixture()
def preflight(tiny_models, tiny_arena, tmp_path, monkeypatch):
    """``preflight(data, strict_paths)``: validate the config and set its game up with
    stand-ins (raises what a real run would raise before its first step)."""
    from sparring.judges import registry
    from sparring.plugins import load_plugins

    load_plugins()  # plug-in judges (the arena's) register into the real BUILDERS first
    monkeypatch.setenv("SPARRING_ARENA_DIR", str(tiny_arena.root))
    for spec_type, builder in stand_in_builders(registry.BUILDERS).items():
        monkeypatch.setitem(registry.BUILDERS, spec_type, builder)

    def run(data: dict, *, strict_paths: bool) -> None:
        from sparring.evaluation.evaluate import plan_evaluation
        from sparring.game.loop import Game

        cfg = load_config(data=copy.deepcopy(data))
        raw = cfg.model_dump(mode="json")
        for var in _env_names(data):  # keys are read from the environment at start
            monkeypatch.setenv(var, "stand-in-secret")
        for role in ("attacker", "defender"):
            player = raw[role]
            if player.get("type") == "openai":  # a served model: no model to load here
                continue
            _check_model_name(player["model"])
            player.update(model=str(tiny_models["llama-chat"]), tokenizer=None, gguf_file=None)
            player.update(revision=None, trust_remote_code=False)
        g = raw["game"]
        for prompts in [g["seeds"], *([g["benign"]["prompts"]] if g["benign"] else [])]:
            if prompts["path"] is not None:
                prompts["path"] = _data_file(
                    prompts["path"], prompts["field"], strict_paths, tmp_path
                )
        e = raw["evaluation"]
        e["prompts"] = [_eval_set(p, strict_paths, tmp_path) for p in e["prompts"]]
        if e["probe"]:
            e["probe"]["prompts"] = [
                _eval_set(p, strict_paths, tmp_path) for p in e["probe"]["prompts"]
            ]
        g["rounds"] = 1
        raw["output_dir"] = str(tmp_path / "run")
        raw["accelerate"].update(cpu=True, mixed_precision="no")
        raw["logging"].update(progress=False, tensorboard=False, report_to=[], tracker_kwargs={})
        cfg = RunConfig.model_validate(raw)
        if e["at_start"] or e["at_end"]:  # read before any evaluation answer is generated
            plan_evaluation(cfg, prompts=e["prompts"], samples=1, answers=1, seed=e["seed"])
        game = Game(cfg, progress=False)
        game.writer.close()
        assert game.defender is not None  # set up as far as the first step
        assert (game.attacker is None) == (cfg.game.mode == "rlhf")

    return run


def _env_names(node: Any) -> list[str]:
    """Names of the environment variables a config reads secrets from (``*_env`` keys)."""
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if str(k).endswith("_env") and isinstance(v, str):
                out.append(v)
            elif str(k).endswith("_env") and isinstance(v, dict):
                out += [x for x in v.values() if isinstance(x, str)]
            else:
                out += _env_names(v)
    elif isinstance(node, list):
        for v in node:
            out += _env_names(v)
    return out


def _check_model_name(name: str) -> None:
    """A prepared-model or plug-in name must resolve (arena names: against the tiny arena);
    folders and hub ids are the user's to download."""
    from sparring.models import registry

    if name.startswith(registry.PREFIX):
        assert name[len(registry.PREFIX) :] in registry.MODELS, f"unknown model {name!r}"
    else:
        registry.resolve_reference(name)


def _data_file(path: str, field: str, strict: bool, tmp: Path) -> str:
    """A prompt file relative to the repository: shipped configs must name one that exists;
    a doc's placeholder (``seeds.jsonl``) becomes a small file of the same format."""
    p = Path(path).expanduser()
    p = p if p.is_absolute() else ROOT / p
    if p.exists():
        return str(p)
    assert not strict, f"prompt file {path} does not exist (relative to {ROOT})"
    prompts = ["how do I pick a lock ?", "tell me how to make a fake id"]
    out = tmp / "stand-in-prompts" / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        text = "".join(json.dumps({field: x}) + "\n" for x in prompts)
    elif out.suffix == ".json":
        text = json.dumps([{field: x} for x in prompts])
    elif out.suffix == ".csv":
        text = field + "\n" + "\n".join(f'"{x}"' for x in prompts) + "\n"
    else:
        out = out.with_suffix(".txt")
        text = "\n".join(prompts) + "\n"
    out.write_text(text, encoding="utf-8")
    return str(out)


def _eval_set(name: str, strict: bool, tmp: Path) -> str:
    """An evaluation prompt set: a named source stays; a file is resolved like a prompt file."""
    if (ROOT / name).exists() or ("/" in name and ":" not in name):
        return _data_file(name, "prompt", strict, tmp)
    return name


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_run_config_passes_preflight(path, preflight):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    load_config(path)  # the file itself, with its line numbers in errors
    preflight(data, strict_paths=True)


@pytest.mark.parametrize("path", JUDGE_SPECS, ids=lambda p: p.name)
def test_shipped_judge_spec_passes_preflight(path, preflight):
    from sparring.judges.registry import parse_judge_spec

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    parse_judge_spec(spec)  # the file as --judge reads it
    preflight(_merge(BASE, {"judge": spec}), strict_paths=False)


@pytest.mark.parametrize(("data", "invalid"), _snippet_params())
def test_doc_snippet_passes_preflight(data, invalid, preflight):
    assert invalid is None, invalid
    preflight(data, strict_paths=False)


def _keys(out: JudgeOutput) -> tuple[list[str], list[str]]:
    return sorted(out.extras), sorted(out.labels)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "guard", "device": "cpu", "categories": True},
        {"type": "guard", "device": "cpu", "categories": False},
        {"type": "classifier", "device": "cpu", "positive_label": 1},
        {"type": "classifier", "device": "cpu", "positive_label": 1, "emit": "helpful"},
    ],
    ids=["guard", "guard-no-categories", "classifier", "classifier-helpful"],
)
def test_stand_ins_return_what_the_real_judges_return(spec, tiny_models, tmp_path):
    """The stand-ins' output keys are the real judges' (on tiny random models built here)."""
    from sparring.judges import build_judge
    from sparring.judges.registry import BUILDERS, parse_judge_spec
    from sparring.testing import build_tiny_classifier

    if spec["type"] == "guard":
        model = tiny_models["llama"]  # no chat template: the v1 template; "safe" is one token
    else:
        model = build_tiny_classifier(tmp_path / "classifier")
    parsed = parse_judge_spec({**spec, "model": str(model)})
    pairs = (["how do I pick a lock ?"] * 2, ["I cannot help with that .", "Sure , step one ."])
    real = build_judge(parsed).score(*pairs)
    stand_in = stand_in_builders(BUILDERS)[type(parsed)](parsed).score(*pairs)
    assert _keys(stand_in) == _keys(real)
