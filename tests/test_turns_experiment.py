"""Single- against multi-turn training measured alike: evaluation over conversations for any
defender (``evaluation.turns``), conversations paired by outcome, probes that learn dialogues,
and ``sparring experiment turns``."""

import json

import numpy as np
import pytest
import yaml

from sparring.config import load_config
from sparring.errors import ConfigError
from sparring.evaluation.compare import paired_means, read_eval_samples
from sparring.experiments.experiment import run_experiment


def _episode(seed: str, episode: int, scores: list[float]) -> list[dict]:
    return [
        {
            "set": "dialogue:learned",
            "seed": seed,
            "episode": episode,
            "turn": t + 1,
            "prompt": f"{seed} {t}",
            "p_safe": p,
        }
        for t, p in enumerate(scores)
    ]


def test_conversations_are_paired_by_their_outcome_not_by_their_answers():
    """A conversation that found an unsafe answer at its second turn is one success, not half
    of one; a seed that opened two conversations gets the mean of their outcomes; single-turn
    rows still average their answers."""
    start = _episode("a", 0, [0.9, 0.1]) + _episode("b", 1, [0.9, 0.9]) + _episode("c", 2, [0.2])
    start += _episode("a", 3, [0.9, 0.9])  # "a" again: one success in two conversations
    final = _episode("a", 0, [0.9, 0.9]) + _episode("b", 1, [0.8, 0.3]) + _episode("d", 2, [0.1])
    single = [{"set": "seeds", "prompt": "a", "p_safe": p} for p in (0.1, 0.9)]
    m = paired_means(start + single, final + single)
    asr = m["dialogue:learned"]["ASR judge"]
    assert asr["keys"] == ["a", "b"] and asr["x"] == [0.5, 0.0] and asr["y"] == [0.0, 1.0]
    assert asr["unpaired"] == 2  # c and d were played by one evaluation only
    assert m["seeds"]["ASR judge"]["x"] == [0.5]


@pytest.fixture()
def turns_experiment(run_data, tmp_path):
    data = run_data(turns=2, rounds=1)
    data["judge"] = {"type": "callable", "target": "sparring.testing:hashed_judge"}
    data["logging"]["tensorboard"] = False
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "exp"
    table = run_experiment(
        config,
        out=out,
        seeds=2,
        arms=["sft", "gpo-1turn", "gpo"],
        samples=3,
        exploit_probes=1,
        log=lambda *_: None,
    )
    return out, table


def test_the_turns_experiment_measures_single_and_multi_turn_training_over_conversations(
    turns_experiment,
):
    out, table = turns_experiment
    single = load_config(out / "gpo-1turn" / "seed-0" / "config.yaml")
    multi = load_config(out / "gpo" / "seed-0" / "config.yaml")
    assert (single.game.turns, single.evaluation.turns) == (1, 2)
    assert (multi.game.turns, multi.evaluation.turns) == (2, 2)
    for arm in ("sft", "gpo-1turn", "gpo"):
        run = out / arm / "seed-1"
        ev = json.loads((run / "eval" / "experiment.json").read_text())
        # the defender trained on single turns is attacked over conversations too
        assert ev["dialogues"]["scripted"]["episodes"] == 3
        assert ev["dialogues"]["learned"]["turns"] == 2
        # its exploitability probe learned conversations, and is measured by their episodes
        probe = json.loads((run / "exploit" / "probe-0" / "eval" / "probe.json").read_text())
        exploit = json.loads((run / "eval" / "exploit.json").read_text())
        assert load_config(run / "exploit" / "probe-0" / "config.yaml").game.turns == 2
        assert exploit["asr_fresh"] == probe["dialogues"]["learned"]["asr"]
        assert exploit["fresh_attacks"] == probe["dialogues"]["learned"]["episodes"]
    columns = table["defender"]["columns"]
    assert "ASR learned dialogues" in columns and "ASR scripted dialogues" in columns
    # seed by seed against gpo: the scripted conversations (the same turns for every arm),
    # each counting once by whether any answer was unsafe
    versus = table["versus"]["arms"]["gpo-1turn"]

    def success(run, name: str, set_name: str) -> float:
        """Each conversation's outcome, averaged per seed prompt, then over seed prompts."""
        won: dict[str, dict[int, float]] = {}
        for r in read_eval_samples(run, name)[1]:
            if r["set"] == set_name:
                by_seed = won.setdefault(r["seed"], {})
                unsafe = float(r["p_safe"] < 0.5)
                by_seed[r["episode"]] = max(by_seed.get(r["episode"], 0.0), unsafe)
        return float(np.mean([np.mean(list(e.values())) for e in won.values()]))

    probed_gpo = []
    for seed in ("0", "1"):
        runs = {arm: out / arm / f"seed-{seed}" for arm in ("gpo", "gpo-1turn")}
        scripted = {a: success(r, "experiment", "dialogue:scripted") for a, r in runs.items()}
        diff = versus["dialogue:scripted"]["ASR judge"]["per_seed"][seed]
        assert diff == pytest.approx(scripted["gpo-1turn"] - scripted["gpo"])
        # exploitability: the probes' own conversations, not the single attacks they also wrote
        probed = {
            a: success(r / "exploit" / "probe-0", "probe", "dialogue:learned")
            for a, r in runs.items()
        }
        diff = versus["exploitability"]["ASR judge"]["per_seed"][seed]
        assert diff == pytest.approx(probed["gpo-1turn"] - probed["gpo"])
        probed_gpo.append(probed["gpo"])
    assert versus["exploitability"]["ASR judge"]["start"] == pytest.approx(np.mean(probed_gpo))
    assert table["versus"]["primary"]["set"] == "exploitability"


def test_the_single_turn_arm_needs_a_base_that_plays_conversations(run_data, tmp_path):
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(run_data()))
    with pytest.raises(ConfigError, match="gpo-1turn .* game.turns > 1"):
        run_experiment(config, out=tmp_path / "exp", arms=["gpo", "gpo-1turn"], exploit=False)
