"""The game end to end on tiny models: files written, exact resume, modes, failure behaviour."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from sparring.cli import main
from sparring.config import load_config
from sparring.errors import ConfigError, DataError, JudgeError, ModelError, NonFiniteError
from sparring.game.loop import Game
from sparring.judges import JudgeOutput
from sparring.runs import latest_checkpoint, read_jsonl


def _play(data, **kw):
    return Game(load_config(data=data), **kw).run()


def _strip_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_gpo_run_writes_everything(run_data, tmp_path):
    data = run_data()
    data["novelty"] = {"bleu_weight": 1.0, "embed_weight": 0.5, "embedder": {"type": "hashing"}}
    summary = _play(data)
    run = tmp_path / "run"
    assert summary["steps"] == 4
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["stage"] for m in metrics] == ["defend", "attack", "defend", "attack"]
    for m in metrics:
        for key in (
            "reward",
            "p_safe",
            "kl",
            "loss/policy",
            "loss/value",
            "len/attack",
            "len/response",
            "novelty/selfbleu",
            "novelty/cosine",
            "time/step",
        ):
            assert math.isfinite(m[key]), (key, m)
    samples = read_jsonl(run / "samples.jsonl")
    assert len(samples) == 4 * 4
    assert {"seed", "attack_raw", "attack", "response", "p_safe", "reward", "step"} <= set(
        samples[0]
    )
    assert all(s["attack"].strip() for s in samples)  # never an empty prompt for the defender
    step, ckpt = latest_checkpoint(run)
    assert step == 4
    for role in ("attacker", "defender"):
        assert (ckpt / role / "policy" / "model.safetensors").is_file()
        assert (ckpt / role / "value_head.safetensors").is_file()
        assert (ckpt / role / "optimizer.pt").is_file()
    assert (ckpt / "state.json").is_file() and (ckpt / "rng" / "rank-0.pt").is_file()
    assert any((ckpt / "novelty").iterdir())
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "final" / "defender")
    assert model.config.model_type == "llama"
    # the resolved config loads again as it was written
    assert load_config(run / "config.yaml").game.rounds == 2


def test_resume_continues_exactly(run_data, tmp_path, monkeypatch):
    reference = run_data()
    reference["output_dir"] = str(tmp_path / "uninterrupted")
    _play(reference)
    expected = _strip_times(read_jsonl(tmp_path / "uninterrupted" / "metrics.jsonl"))
    expected_samples = read_jsonl(tmp_path / "uninterrupted" / "samples.jsonl")

    # the same run, killed after step 3 was logged but before its checkpoint was written
    real_save = Game.save_checkpoint

    def crash_at_3(self):
        if self.step == 3:
            raise SystemExit("killed")
        return real_save(self)

    monkeypatch.setattr(Game, "save_checkpoint", crash_at_3)
    with pytest.raises(SystemExit):
        _play(run_data())
    monkeypatch.setattr(Game, "save_checkpoint", real_save)
    run = tmp_path / "run"
    assert latest_checkpoint(run)[0] == 2
    assert len(read_jsonl(run / "metrics.jsonl")) == 3  # step 3 was logged, then lost

    cfg = load_config(run / "config.yaml")
    Game(cfg, resume=True).run()
    resumed = _strip_times(read_jsonl(run / "metrics.jsonl"))
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed == expected
    assert read_jsonl(run / "samples.jsonl") == expected_samples


def test_rlhf_mode_trains_defender_on_seeds(run_data, tmp_path, seed_file):
    _play(run_data(mode="rlhf"))
    run = tmp_path / "run"
    metrics = read_jsonl(run / "metrics.jsonl")
    assert {m["stage"] for m in metrics} == {"defend"} and len(metrics) == 2
    seeds = set(seed_file.read_text().split("\n"))
    assert all(s["attack"] in seeds for s in read_jsonl(run / "samples.jsonl"))
    assert not (run / "final" / "attacker").exists()


def test_attacker_mode_keeps_defender_frozen(run_data, tmp_path, tiny_models):
    _play(run_data(mode="attacker"))
    run = tmp_path / "run"
    assert {m["stage"] for m in read_jsonl(run / "metrics.jsonl")} == {"attack"}
    before = load_file(str(tiny_models["llama"] / "model.safetensors"))
    after = load_file(str(run / "final" / "defender" / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    _, ckpt = latest_checkpoint(run)
    assert not (ckpt / "defender").exists()


def test_constant_judge_leaves_attacker_only_its_diversity_reward(run_data, tmp_path):
    data = run_data(mode="attacker", rounds=3)
    data["judge"] = {
        "type": "callable",
        "target": "sparring.testing:constant_judge",
        "kwargs": {"value": 1.0},
    }
    data["novelty"] = {"bleu_weight": 2.0, "embed_weight": 0.5, "embedder": {"type": "hashing"}}
    _play(data)
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    for s in samples:
        assert s["reward"] == pytest.approx(-(2.0 * s["selfbleu"] + 0.5 * s["cosine"]), abs=1e-9)
    later = [s for s in samples if s["step"] > 1]
    assert any(s["cosine"] > 0 for s in later)  # the diversity part is live, not constant zero
    assert all(s["reward"] == 0 for s in samples if s["step"] == 1)  # first batch: empty history


def test_benign_prompts_are_scored_for_helpfulness(run_data, tmp_path, benign_file):
    data = run_data(mode="rlhf", benign={"prompts": {"path": str(benign_file)}, "fraction": 0.34})
    _play(data)
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    benign = [s for s in samples if s["benign"]]
    assert benign and len(benign) == 2 * 2  # 2 benign rows per step beside 4 attacks
    assert all(s["reward"] == s["helpful"] for s in benign)
    assert all(s["reward"] == s["p_safe"] for s in samples if not s["benign"])


def test_seed_fraction_has_the_defender_answer_the_seeds_too(run_data, tmp_path, benign_file):
    data = run_data(benign={"prompts": {"path": str(benign_file)}, "fraction": 0.25})
    data["game"]["seed_fraction"] = 0.5  # 4 attacks, then 4 of the step's seeds as they are
    _play(data)
    run = tmp_path / "run"
    samples, metrics = read_jsonl(run / "samples.jsonl"), read_jsonl(run / "metrics.jsonl")
    for step in {m["step"] for m in metrics if m["stage"] == "defend"}:
        rows = [s for s in samples if s["step"] == step]
        attacks = [s for s in rows if "attack" in s]
        direct = [s for s in rows if not s["benign"] and "attack" not in s]
        assert len(attacks) == 4 and len(direct) == 4
        assert len([s for s in rows if s["benign"]]) == 3  # a quarter of 8 + 3
        # the seeds answered directly are the ones the attacker rewrote in this step
        assert [s["prompt"] for s in direct] == [s["seed"] for s in attacks]
        assert all(s["reward"] == s["p_safe"] for s in direct)
        m = next(m for m in metrics if m["step"] == step)
        assert m["seeds/asr"] == pytest.approx(sum(s["p_safe"] < 0.5 for s in direct) / 4)
        assert m["asr"] == pytest.approx(sum(s["p_safe"] < 0.5 for s in attacks) / 4)
    # attack stages and exports are about the attacker's prompts only
    assert all("seeds/asr" not in m for m in metrics if m["stage"] == "attack")
    assert all("attack" in s for s in samples if s["stage"] == "attack")


def test_seed_fraction_gives_rlhf_as_many_answers_per_update_as_gpo(
    run_data, tmp_path, benign_file
):
    """Equal compute: with seed_fraction, a GPO defend batch holds the attacks plus the seeds;
    an rlhf defend batch holds as many prompts (more seeds from the pool), and as many benign."""
    counts = {}
    for mode in ("gpo", "rlhf"):
        data = run_data(mode=mode, benign={"prompts": {"path": str(benign_file)}, "fraction": 0.25})
        data["game"]["seed_fraction"] = 0.5
        data["output_dir"] = str(tmp_path / mode)
        _play(data)
        samples = read_jsonl(tmp_path / mode / "samples.jsonl")
        metrics = read_jsonl(tmp_path / mode / "metrics.jsonl")
        step = next(m["step"] for m in metrics if m["stage"] == "defend")
        rows = [s for s in samples if s["step"] == step]
        counts[mode] = (len(rows), sum(s["benign"] for s in rows))
    assert counts["gpo"] == counts["rlhf"] == (11, 3)


def test_failures_before_training(run_data, tmp_path):
    data = run_data()
    data["defender"]["model"] = str(tmp_path / "missing-model")
    with pytest.raises(
        ModelError, match="defender.model: model folder .*missing-model does not exist"
    ):
        _play(data)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\nnot json\n', encoding="utf-8")
    data = run_data(seeds={"path": str(bad)})
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: invalid JSON"):
        _play(data)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no prompts"):
        _play(run_data(seeds={"path": str(empty)}))
    data = run_data()
    data["judge"] = {
        "type": "callable",
        "target": "sparring.testing:constant_judge",
        "kwargs": {"value": 2.0},
    }
    with pytest.raises(JudgeError, match="expected a probability"):
        _play(data)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


class _ShapeJudge:
    name = "short"

    def score(self, prompts, responses):
        return JudgeOutput(p_safe=[0.5] * (len(prompts) - 1))


class _NanAfterFirstCall:
    name = "flaky"

    def __init__(self):
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        bad = self.calls > 3  # preflight + steps 1-2 are fine
        return JudgeOutput(p_safe=[float("nan") if bad else 0.5] * len(prompts))


def test_wrong_shape_judge_fails_before_training(run_data, tmp_path):
    with pytest.raises(JudgeError, match="returned 1 values for 'p_safe'; expected 2"):
        Game(load_config(data=run_data()), judge=_ShapeJudge())


def test_nan_rewards_skip_updates_then_abort_with_checkpoint_intact(run_data, tmp_path):
    data = run_data(rounds=4)
    data["max_nonfinite_in_a_row"] = 2
    with pytest.raises(
        NonFiniteError,
        match="2 updates in a row skipped.*only 0 of \\d+ rows have a finite reward in the (defend|attack) stage",
    ):
        Game(load_config(data=data), judge=_NanAfterFirstCall()).run()
    run = tmp_path / "run"
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["skipped"] is not None for m in metrics] == [False, False, True, True]
    step, ckpt = latest_checkpoint(run)
    assert step == 3  # a skipped update leaves the weights as they were: still a good checkpoint
    weights = load_file(str(ckpt / "defender" / "policy" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_existing_run_folder_is_never_overwritten(run_data, tmp_path):
    _play(run_data(rounds=1))
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="already holds a run; resume it with --resume"):
        _play(run_data(rounds=1))
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_cli_train_with_overrides(run_data, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(run_data()), encoding="utf-8")
    assert (
        main(
            [
                "train",
                str(cfg),
                "--set",
                "game.rounds=1",
                "--set",
                "attacker.lr=1e-4",
                "--no-progress",
            ]
        )
        == 0
    )
    resolved = load_config(tmp_path / "run" / "config.yaml")
    assert resolved.attacker.lr == 1e-4 and resolved.game.rounds == 1
    assert "seconds_per_round" in capsys.readouterr().out
    assert main(["train", str(cfg), "--set", "game.rouds=1"]) == 2
    assert "did you mean 'game.rounds'" in capsys.readouterr().err
    json.loads((tmp_path / "run" / "summary.json").read_text())


def test_cli_without_output_dir_never_reuses_a_run_folder(run_data, tmp_path, monkeypatch):
    import yaml

    data = run_data(rounds=1)
    del data["output_dir"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(cfg), "--no-progress"]) == 0
    assert main(["train", str(cfg), "--no-progress"]) == 0
    assert (tmp_path / "runs" / "tiny" / "metrics.jsonl").is_file()
    assert (tmp_path / "runs" / "tiny-2" / "metrics.jsonl").is_file()
    saved = load_config(tmp_path / "runs" / "tiny-2" / "config.yaml")
    assert saved.output_dir == "runs/tiny-2"  # the resolved folder is part of the saved config


class _HalfUndecided:
    """Unsafe (0.1) on even rows, no verdict (NaN) on odd rows (after the two-pair preflight)."""

    name = "half-undecided"

    def score(self, prompts, responses):
        nan = float("nan") if len(prompts) > 2 else 0.5
        return JudgeOutput(p_safe=[0.1 if i % 2 == 0 else nan for i in range(len(prompts))])


def test_training_metrics_leave_undecided_scores_out_as_evaluation_does(run_data, tmp_path):
    """One rule for a non-finite judge score: left out of ASR and P(safe) (never read as safe),
    and counted. The step's ASR is over the decided rows alone: all of them unsafe."""
    from sparring.evaluation.metrics import attack_success_rate

    data = run_data(rounds=1, mode="attacker")
    data["max_nonfinite_in_a_row"] = 5
    Game(load_config(data=data), judge=_HalfUndecided()).run()
    m = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert m["asr"] == 1.0 and m["p_safe"] == pytest.approx(0.1)
    assert m["judge/nonfinite"] == 2.0  # 4 attacks, two undecided
    assert attack_success_rate([0.1, float("nan")]) == 1.0  # evaluation's rule, the same
