"""Evaluation commands on real tiny runs played by the Game: eval, crossplay, exploit, experiment."""

import json

import pytest
import yaml

from sparring.cli import main
from sparring.config import load_config
from sparring.errors import ConfigError, SparringError
from sparring.experiments.experiment import arm_config, run_experiment
from sparring.experiments.exploit import attack_budget, exploit_config


@pytest.fixture()
def played(run_data, tmp_path):
    from sparring.game.loop import Game

    data = run_data()
    data["novelty"] = {"bleu_weight": 1.0, "embed_weight": 0.5, "embedder": {"type": "hashing"}}
    Game(load_config(data=data)).run()
    return tmp_path / "run"


def test_eval_crossplay_exploit_report_on_a_played_run(played, tmp_path):
    run = played
    assert main(["eval", str(run), "--samples", "4", "--no-progress", "--name", "final"]) == 0
    ev = json.loads((run / "eval" / "final.json").read_text())
    assert (
        ev["players"]["attacker"]["label"] == "final"
        and ev["players"]["defender"]["label"] == "final"
    )
    assert ev["attacker"]["diversity"]["embedder"] == "HashingEmbedder"  # the run's own embedder
    assert main(["crossplay", str(run), "--samples", "2", "--no-progress"]) == 0
    cross = json.loads((run / "eval" / "crossplay.json").read_text())
    # checkpoint.every=1, keep_last=10: steps 1-4 plus the initial models
    assert (
        cross["attackers"]
        == cross["defenders"]
        == ["step-0", "step-1", "step-2", "step-3", "step-4"]
    )
    assert [len(r) for r in cross["asr"]] == [5] * 5
    assert main(["exploit", str(run), "--steps", "2", "--probes", "2", "--no-progress"]) == 0
    ex = json.loads((run / "eval" / "exploit.json").read_text())
    assert ex["steps"] == 2 and ex["asr_final"] is not None and 0 <= ex["asr_last_mean"] <= 1
    # two probes on two seeds; the headline is the strongest, the mean and spread beside it
    assert ex["n_probes"] == 2 and [p["probe"] for p in ex["probes"]] == [0, 1]
    assert ex["probes"][0]["seed"] != ex["probes"][1]["seed"]
    each = [p["asr_fresh"] for p in ex["probes"]]
    assert ex["asr_fresh"] == max(each) and ex["asr_fresh_mean"] == pytest.approx(sum(each) / 2)
    for k in (0, 1):
        cfg = load_config(run / "exploit" / f"probe-{k}" / "config.yaml")
        assert cfg.game.mode == "attacker"
        assert cfg.defender.model == str(run / "final" / "defender")
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "index.html").read_text()
    assert (
        "Exploitability" in html and "Cross-play matrix" in html and "final: defender final" in html
    )
    # the evaluation's refusal rate and the agreement between judge and refusal detector
    assert "refused" in html and "kappa judge~refusal" in html
    assert "ASR on fresh attacks" in html and 0 <= ex["asr_fresh"] <= 1


def test_exploit_config_keeps_the_attackers_budget(run_data, tmp_path, tiny_models):
    import shutil

    from sparring.config import dump_config

    data = run_data(
        rounds=3,
        mode="rlhf",
        schedule=[{"stage": "defend", "steps": 2}, {"stage": "attack", "steps": 1}],
    )
    cfg = load_config(data=data)
    run = cfg.run_dir()
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    shutil.copytree(tiny_models["llama"], run / "final" / "defender")
    assert attack_budget(cfg) == 3  # 3 rounds of (defend 2, attack 1), counted even in rlhf mode
    ex = exploit_config(run)
    # twice the game's attack steps: a probe weaker than the game's attacker proves little
    assert ex.game.mode == "attacker" and [s.steps for s in ex.game.schedule] == [6]
    assert ex.attacker.model == cfg.attacker.model  # a fresh attacker from the initial model
    assert ex.defender.model == str(run / "final" / "defender")
    assert ex.run_dir() == run / "exploit" / "probe-0" and ex.seed == cfg.seed
    second = exploit_config(run, probe_index=1)
    assert second.run_dir() == run / "exploit" / "probe-1" and second.seed != cfg.seed
    assert [s.steps for s in exploit_config(run, steps=5).game.schedule] == [5]


def test_exploit_config_of_a_run_with_a_pool_and_a_probe(run_data, tiny_models):
    """A pool needs two learners and the probe a changing defender: the exploitability game
    (the attacker alone against the frozen defender) keeps neither, and is a valid config."""
    import shutil

    from sparring.config import dump_config

    data = run_data(rounds=2)
    data["game"]["pool"] = {"opponent": "uniform", "every": 1, "size": 2, "payoff_prompts": 2}
    data["evaluation"] = {
        **data["evaluation"],
        "probe": {"prompts": [data["game"]["seeds"]["path"]], "samples": 2},
    }
    cfg = load_config(data=data)
    assert cfg.game.pool is not None and cfg.evaluation.probe is not None
    run = cfg.run_dir()
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    shutil.copytree(tiny_models["llama"], run / "final" / "defender")
    ex = exploit_config(run)
    assert ex.game.mode == "attacker"
    assert ex.game.pool is None and ex.evaluation.probe is None


def test_arm_overrides(run_data):
    base = load_config(data=run_data())
    from pathlib import Path

    cfg, train = arm_config(base, "gpo+div", 1, Path("/tmp/x"))
    assert (
        train
        and cfg.game.mode == "gpo"
        and (cfg.novelty.bleu_weight, cfg.novelty.embed_weight) == (5.0, 1.0)
    )
    assert cfg.seed == base.seed + 1 and cfg.run_dir() == Path("/tmp/x/gpo+div/seed-1")
    cfg, _ = arm_config(base, "rlhf+div", 0, Path("/tmp/x"))
    assert cfg.game.mode == "attacker" and cfg.novelty.bleu_weight == 5.0
    cfg, train = arm_config(base, "sft", 0, Path("/tmp/x"))
    assert not train
    cfg, _ = arm_config(base, "gpo", 0, Path("/tmp/x"))
    assert cfg.novelty.bleu_weight == 0 and cfg.novelty.embed_weight == 0
    assert cfg.game.pool is None  # the paper's gpo: latest iterates, nothing measured
    # pool arms: the rule per arm; beside them gpo keeps a pool that only measures
    for arm, rule, div in (
        ("gpo-pool", "uniform", 0.0),
        ("gpo-psro+div", "nash", 5.0),
        ("gpo", "latest", 0.0),
    ):
        cfg, train = arm_config(base, arm, 0, Path("/tmp/x"), pools=True)
        assert train and cfg.game.mode == "gpo" and cfg.novelty.bleu_weight == div
        assert cfg.game.pool.opponent == rule and cfg.game.pool.every == 4
    # the population arms: nothing evicted; PSRO over it deploys the Nash mixture
    cfg, _ = arm_config(base, "gpo-fp", 0, Path("/tmp/x"), pools=True)
    assert cfg.game.pool.opponent == "uniform" and cfg.game.pool.size is None
    cfg, _ = arm_config(base, "gpo-psro-full", 0, Path("/tmp/x"), pools=True)
    pool = cfg.game.pool
    assert (pool.opponent, pool.size, pool.deploy) == ("nash", None, "nash")


def _experiment(data: dict, tmp_path, **kw):
    """A one-round experiment on ``data`` in ``tmp_path/exp``, without exploitability probes."""
    data["game"]["rounds"] = 1
    data["logging"]["tensorboard"] = False
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "exp"
    kw.setdefault("log", lambda *_: None)
    return out, run_experiment(config, out=out, exploit=False, **kw)


def test_pools_experiment_measures_every_arm_alike(run_data, tmp_path):
    data = run_data(pool={"every": 1, "size": 2, "payoff_prompts": 2})
    out, table = _experiment(data, tmp_path, seeds=1, arms=["gpo", "gpo-psro"], samples=2)
    assert load_config(out / "gpo" / "seed-0" / "config.yaml").game.pool.opponent == "latest"
    assert load_config(out / "gpo-psro" / "seed-0" / "config.yaml").game.pool.opponent == "nash"
    assert "Nash gap (pool)" in table["defender"]["columns"]
    for arm in ("gpo", "gpo-psro"):
        mean, _, n = table["defender"]["rows"][arm]["Nash gap (pool)"]
        assert n == 1 and mean >= 0
    assert "Nash gap (pool)" in (out / "results.md").read_text()


def test_an_arm_deploying_a_mixture_is_measured_at_its_latest_iterate_too(run_data, tmp_path):
    """gpo-psro-full deploys the defender's Nash mixture; its latest weights (the last step's
    checkpoint) are evaluated beside it as the row ``gpo-psro-full@latest``, compared with gpo
    like any arm, and kept out of the common attack set (whose defenders are what arms deploy)."""
    data = run_data(pool={"every": 1, "payoff_prompts": 2})
    out, table = _experiment(data, tmp_path, seeds=1, arms=["gpo", "gpo-psro-full"], samples=2)
    run = out / "gpo-psro-full" / "seed-0"
    latest = json.loads((run / "eval" / "experiment-latest.json").read_text())
    deployed = json.loads((run / "eval" / "experiment.json").read_text())
    assert latest["checkpoint"] == "step-2" and deployed["checkpoint"] == "final"
    assert "gpo-psro-full@latest" in table["defender"]["rows"]
    assert "gpo-psro-full@latest" in table["versus"]["arms"]
    assert json.loads((out / "common-seed-0.json").read_text())["defenders"] == [
        "gpo",
        "gpo-psro-full",
    ]
    # the latest iterate's row is compared on its own answers, not the mixture's: make every
    # latest answer to the attacks unsafe (by the evaluation judge) and the row says so
    samples = run / "eval" / "experiment-latest.samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for r in rows:
        r["p_safe"] = 0.0
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, table = _experiment(data, tmp_path, seeds=1, arms=["gpo", "gpo-psro-full"], samples=2)
    latest_row = table["versus"]["arms"]["gpo-psro-full@latest"]["attacks"]["ASR judge"]
    deployed_row = table["versus"]["arms"]["gpo-psro-full"]["attacks"]["ASR judge"]
    assert latest_row["final"] == 1.0 and deployed_row["final"] < 1.0


def test_experiment_runs_evaluates_and_skips_finished_arms(run_data, tmp_path):
    lines = []
    out, table = _experiment(
        run_data(), tmp_path, seeds=2, arms=["sft", "rlhf"], samples=3, log=lines.append
    )
    # seed by seed: a stopped experiment holds whole seeds of every arm, paired
    assert [line.split("]")[0] for line in lines[:4]] == [
        "[sft seed 0", "[rlhf seed 0", "[sft seed 1", "[rlhf seed 1"
    ]  # fmt: skip
    assert set(table["defender"]["rows"]) == {"sft", "rlhf"}
    mean, std, n = table["defender"]["rows"]["rlhf"]["ASR attacks"]
    assert n == 2 and 0 <= mean <= 1 and std >= 0
    assert json.loads((out / "rlhf" / "seed-1" / "summary.json").read_text())["steps"] == 1
    assert load_config(out / "rlhf" / "seed-1" / "config.yaml").seed == 1
    md = (out / "results.md").read_text()
    assert "| sft |" in md and "| rlhf |" in md and (out / "results.html").is_file()
    # the common attack set: the untrained attacker against every arm's defender, per seed
    common = json.loads((out / "common-seed-1.json").read_text())
    assert common["attackers"] == ["initial"] and common["defenders"] == ["sft", "rlhf"]
    assert all(0 <= x <= 1 for x in common["asr"][0])
    assert table["defender"]["rows"]["rlhf"]["ASR common attacks"][2] == 2
    assert "Table 3" in md
    # every table says how it was made: the protocol, the machine, the compute per arm and seed
    prov = table["provenance"]
    assert len(prov["seconds"]["rlhf"]) == 2 and all(t > 0 for t in prov["seconds"]["rlhf"])
    assert prov["total"] == pytest.approx(sum(map(sum, prov["seconds"].values())))
    assert "## How this was made" in md and "evidence protocol" in md and "CPU cores" in md
    stamp = (out / "rlhf" / "seed-0" / "metrics.jsonl").stat().st_mtime_ns
    _experiment(run_data(), tmp_path, seeds=2, arms=["sft", "rlhf"], samples=3)
    assert (
        out / "rlhf" / "seed-0" / "metrics.jsonl"
    ).stat().st_mtime_ns == stamp  # not trained again
    # continuing it with another base config would mix two experiments: refused, named
    with pytest.raises(ConfigError, match=r"another base config \(attacker.lr: .* -> 0.5"):
        _experiment(run_data(), tmp_path, seeds=2, arms=["sft"], overrides=["attacker.lr=0.5"])
    # a setting added to Sparring since the experiment began counts at its default: a newer
    # version continues it (base_config.yaml as an older version wrote it, without game.turns)
    saved = yaml.safe_load((out / "base_config.yaml").read_text())
    del saved["game"]["turns"], saved["evaluation"]["scripted"]
    (out / "base_config.yaml").write_text(yaml.safe_dump(saved))
    _experiment(run_data(), tmp_path, seeds=2, arms=["sft", "rlhf"], samples=3)
    with pytest.raises(ConfigError, match=r"game.turns: 1 -> 2"):
        _experiment(run_data(), tmp_path, seeds=2, arms=["sft"], overrides=["game.turns=2"])


def test_in_run_evaluation_uses_the_players_in_memory(run_data, tmp_path, monkeypatch):
    """evaluation.at_start / at_end evaluate the game's own players: no model is loaded again
    while the training state is resident (it used to load four more models on every rank)."""
    import sparring.evaluation.evaluate as evaluate
    from sparring.game.loop import Game

    def no_loading(*args, **kwargs):
        raise AssertionError("in-run evaluation loaded a model")

    monkeypatch.setattr(evaluate, "load_player", no_loading)
    data = run_data(rounds=1)
    data["evaluation"] = {**data["evaluation"], "at_start": True, "at_end": True, "samples": 3}
    Game(load_config(data=data), progress=False).run()
    for name in ("start", "final"):
        ev = json.loads((tmp_path / "run" / "eval" / f"{name}.json").read_text())
        assert ev["defender"]["sets"]["attacks"]["n"] == 3


def test_evaluation_at_start_leaves_training_unchanged(run_data, tmp_path):
    """The start evaluation samples from the same random generators as training; it restores
    them, so a run with evaluation.at_start plays exactly the steps of one without it (a
    before/after comparison measures the run a user would have got without measuring)."""
    from sparring.game.loop import Game

    def metrics(at_start: bool) -> list[dict]:
        data = run_data()
        data["output_dir"] = str(tmp_path / f"run-{at_start}")
        data["evaluation"] = {**data["evaluation"], "at_start": at_start, "samples": 3}
        Game(load_config(data=data), progress=False).run()
        lines = (tmp_path / f"run-{at_start}" / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    with_eval, without = metrics(True), metrics(False)
    assert (tmp_path / "run-True" / "eval" / "start.json").exists()
    assert len(with_eval) == 4 and with_eval == without


def test_train_prints_before_after_differences_with_intervals(
    run_data, tmp_path, capsys, monkeypatch
):
    """sparring train with evaluation at start and end ends with the final-minus-start table:
    each difference equals the two evaluations' own figures, with its bootstrap interval."""
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps titles to the terminal's width
    data = run_data(rounds=1)
    data["evaluation"] = {**data["evaluation"], "at_start": True, "at_end": True, "samples": 4}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["train", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "final minus start" in out and "95% interval" in out
    run = tmp_path / "run"
    comparison = json.loads((run / "eval" / "start-vs-final.json").read_text())
    start = json.loads((run / "eval" / "start.json").read_text())
    final = json.loads((run / "eval" / "final.json").read_text())
    seeds = comparison["seeds"]
    judge_figure = next(k for k in seeds if "judge" in k and "eval" not in k)
    e = seeds[judge_figure]
    a0 = start["defender"]["sets"]["seeds"]["judge"]["asr"]
    a1 = final["defender"]["sets"]["seeds"]["judge"]["asr"]
    assert e["diff"] == pytest.approx(a1 - a0) and e["low"] <= e["diff"] <= e["high"]
    assert e["n_prompts"] == 4 and e["resamples"] == 10_000


def test_exploit_probe_is_the_same_for_every_arm_and_scored_on_fresh_attacks(run_data, tmp_path):
    """Arms differ in their diversity weights; the probe does not: its attacker and novelty
    come from the base config. Its figure is the evaluation judge's ASR on fresh attacks."""
    from sparring.experiments.exploit import exploit

    data = run_data(rounds=1)
    data["eval_judge"] = {"type": "callable", "target": "sparring.testing:keyword_judge"}
    data["logging"]["tensorboard"] = False
    base = load_config(data=data)
    probes = []
    for arm in ("gpo", "gpo+div"):
        cfg, _ = arm_config(base, arm, 0, tmp_path / "exp")
        from sparring.game.loop import Game

        Game(cfg, progress=False).run()
        probes.append(exploit_config(cfg.run_dir(), base=base))
    assert probes[0].novelty == probes[1].novelty == base.novelty
    assert probes[0].attacker == probes[1].attacker == base.attacker
    assert probes[0].seed == probes[1].seed
    assert probes[0].defender.model != probes[1].defender.model  # each arm's own final defender
    # trained against the strongest judge there is: the evaluation judge
    assert probes[0].judge == base.eval_judge
    result = exploit(
        tmp_path / "exp" / "gpo" / "seed-0", base=base, attacks=5, probes=2, progress=False
    )
    fresh_asr = []
    for k in (0, 1):
        folder = tmp_path / "exp" / "gpo" / "seed-0" / "exploit" / f"probe-{k}" / "eval"
        probe = json.loads((folder / "probe.json").read_text())
        fresh = probe["defender"]["sets"]["attacks"]
        assert fresh["n"] == 5 and result["probes"][k]["asr_fresh"] == fresh["eval_judge"]["asr"]
        fresh_asr.append(fresh["eval_judge"]["asr"])
    assert result["fresh_attacks"] == 5 and result["asr_fresh"] == max(fresh_asr)
    assert result["asr_fresh_judge"] == probe["judges"]["eval_judge"]


def test_seeds_shared_between_processes_then_one_run_writes_the_tables(run_data, tmp_path):
    """``only_seeds`` runs just those seeds and writes no table; the run over every seed then
    reuses that work (nothing trained again) and writes the tables over all of them."""
    out, table = _experiment(
        run_data(), tmp_path, seeds=2, arms=["rlhf"], samples=2, only_seeds=[1]
    )
    assert table is None and not (out / "results.md").exists()
    assert (out / "rlhf" / "seed-1" / "summary.json").is_file()
    assert not (out / "rlhf" / "seed-0").exists()
    # the seed's share of the closing table (its common attack set) is done by its process
    assert not (out / "common-seed-0.json").exists()
    common = (out / "common-seed-1.json").stat().st_mtime_ns
    stamp = (out / "rlhf" / "seed-1" / "metrics.jsonl").stat().st_mtime_ns
    lines: list[str] = []
    _, table = _experiment(
        run_data(), tmp_path, seeds=2, arms=["rlhf"], samples=2, log=lines.append
    )
    assert table["defender"]["rows"]["rlhf"]["ASR attacks"][2] == 2
    assert (out / "rlhf" / "seed-1" / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert (out / "common-seed-1.json").stat().st_mtime_ns == common  # read back, not redone
    assert (out / "results.md").is_file()


def test_only_seeds_parses_ranges_and_names_a_bad_one():
    from sparring.cli_args import index_list

    assert index_list("3,5-7,3", "--only-seeds") == [3, 5, 6, 7]
    assert index_list(None, "--only-seeds") is None
    for bad in ("x", "3-", "-1", ""):
        with pytest.raises(SparringError, match="--only-seeds"):
            index_list(bad, "--only-seeds")


def test_compute_counts_a_run_once_when_two_rows_read_it(tmp_path):
    """An ``ARM@latest`` row evaluates ARM's own runs: the experiment's compute counts those runs
    once, and the sentence says whose runs the row reads instead of a second per-seed time."""
    from sparring.experiments.provenance import provenance, provenance_lines

    runs = {}
    for arm, secs in (("gpo", 60.0), ("psro", 120.0)):
        runs[arm] = []
        for s in range(2):
            d = tmp_path / arm / f"seed-{s}"
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps({"seconds": secs}))
            runs[arm].append({"seed": s, "run_dir": str(d)})
    runs["psro@latest"] = [dict(e) for e in runs["psro"]]
    assert "from no fresh attackers (not measured)" in provenance(runs)["protocol"]
    for entries in runs.values():  # the probes a table rests on are said as they were run
        for e in entries:
            e["exploit"] = {"n_probes": 1, "steps": 100}
    prov = provenance(runs)
    assert "from 1 fresh attacker of 100 attack steps per defender trained" in prov["protocol"]
    assert prov["total"] == pytest.approx(2 * 60.0 + 2 * 120.0)
    line = provenance_lines(prov)[1]
    assert "gpo 1.0 min per seed, psro 2.0 min per seed, psro@latest: psro's runs" in line
    assert line.startswith("Compute: 6 minutes of step time in all")
