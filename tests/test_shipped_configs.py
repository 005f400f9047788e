"""The configs, scripts and docs that ship with Sparring name only keys that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from sparring.config import load_config
from test_preflight_configs import JUDGE_SPECS, RUN_CONFIGS

ROOT = Path(__file__).resolve().parents[1]


def _set_flags(text: str) -> list[str]:
    """The values of every ``--set KEY=VALUE`` in shell-like text (line continuations joined,
    shell variables replaced by a placeholder)."""
    text = re.sub(r"\\\n\s*#?", " ", text)
    text = re.sub(r"\$\{?\w+\}?", "x", text)
    flags = []
    for line in text.splitlines():
        if "--set" not in line:
            continue
        words = shlex.split(line[line.index("--set") :])
        flags += [v for w, v in zip(words, words[1:], strict=False) if w == "--set" and "=" in v]
    return flags


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_run_config_loads(path):
    cfg = load_config(path)
    assert cfg.game.rounds >= 1


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_overrides_in_a_config_header_apply_to_it(path):
    flags = _set_flags(path.read_text(encoding="utf-8"))
    load_config(path, flags)


@pytest.mark.parametrize("path", JUDGE_SPECS, ids=lambda p: p.name)
def test_the_commands_in_a_judge_spec_header_name_real_options(path):
    """A judge spec's header shows how to use it: every ``sparring ...`` line parses."""
    from sparring.cli import build_parser

    text = re.sub(r"\\\n\s*#?", " ", path.read_text(encoding="utf-8"))
    lines = [ln.split("#", 1)[1].strip() for ln in text.splitlines() if ln.startswith("#")]
    commands = [shlex.split(ln)[1:] for ln in lines if ln.startswith("sparring ")]
    for argv in commands:
        build_parser().parse_args(argv)  # argparse exits 2 on an unknown option


def test_gpu_smoke_overrides_apply_to_its_config():
    """Each of the smoke script's runs (one command each) loads with its own overrides: a bf16
    round, the ZeRO-2 round, and an fp16 round with float16 players."""
    script = (ROOT / "benchmarks" / "gpu_smoke.sh").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*#?", " ", script)
    runs = [_set_flags(line) for line in joined.splitlines() if "sparring.cli train" in line]
    assert len(runs) == 3
    cfgs = [load_config(ROOT / "configs" / "smollm2-harmbench.yaml", f) for f in runs]
    assert all(c.accelerate.cpu is False for c in cfgs)
    assert [c.accelerate.mixed_precision for c in cfgs] == ["bf16", "bf16", "fp16"]
    assert cfgs[0].game.rounds == 1
    assert cfgs[2].defender.dtype == cfgs[2].attacker.dtype == "float16"


def test_set_flags_are_found_across_continuations():
    text = "run --set a.b=1 \\\n  --set c=$HOME/x \\\n# --set d='e f'\n"
    assert _set_flags(text) == ["a.b=1", "c=x/x", "d=e f"]


def test_make_train_plays_the_built_in_default_until_it_is_edited():
    """`make train` plays configs/arena.yaml (so editing it changes the run); as shipped it is
    the packaged default `sparring train` plays without a config."""
    from sparring.config import DEFAULT_CONFIG

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "CONFIG ?= configs/arena.yaml" in makefile
    shipped = (ROOT / "configs" / "arena.yaml").read_text(encoding="utf-8")
    assert shipped == Path(DEFAULT_CONFIG).read_text(encoding="utf-8")


def test_the_smollm2_run_reports_on_the_test_splits_with_the_shipped_quality_judge():
    """The SmolLM2 run is measured on every HarmBench test behaviour and StrongREJECT test prompt
    at full length, one answer each, and its benign-quality judge is configs/judges'
    smollm2-pairwise (the spec whose agreement with a person the audit measures), not a copy that
    drifted from it."""
    cfg = load_config(ROOT / "configs" / "smollm2-harmbench.yaml")
    ev = cfg.evaluation
    assert ev.prompts == ["harmbench-test", "strongreject-test"]
    assert ev.samples >= 159 and ev.answers == 1 and ev.max_new_tokens >= 256
    assert ev.at_start and ev.at_end and ev.benign_samples >= 216
    spec = yaml.safe_load((ROOT / "configs" / "judges" / "smollm2-pairwise.yaml").read_text())
    assert ev.quality.judge.model_dump(exclude_unset=True) == spec
    # named by its file, so there is no copy to drift
    raw = yaml.safe_load((ROOT / "configs" / "smollm2-harmbench.yaml").read_text())
    assert raw["evaluation"]["quality"]["judge"] == "configs/judges/smollm2-pairwise.yaml"
