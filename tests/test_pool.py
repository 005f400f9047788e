"""Opponent pools: the Nash solver against hand-solved games, snapshots that swap in and out bit
for bit, the weight average a pool deploys, eviction, and a game played with a pool."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from sparring.config import DefenderConfig, PoolConfig, load_config
from sparring.errors import ConfigError
from sparring.game.loop import Game
from sparring.game.nash import nash_gap, one_hot, solve_zero_sum
from sparring.game.pool import Member, Pools
from sparring.players import snapshots
from sparring.players.player import Player
from sparring.runs import read_jsonl

# -- the Nash solver ------------------------------------------------------------------------------


def test_mixed_equilibrium_of_a_two_by_two_game():
    # rows: 3x - 2(1-x) = -x + (1-x)  ->  x = 3/7; columns: 3y - (1-y) = -2y + (1-y)  ->  y = 2/7
    m = np.array([[3.0, -1.0], [-2.0, 1.0]])
    x, y, value = solve_zero_sum(m)
    np.testing.assert_allclose(x, [3 / 7, 4 / 7], atol=1e-9)
    np.testing.assert_allclose(y, [2 / 7, 5 / 7], atol=1e-9)
    assert value == pytest.approx(1 / 7)
    assert nash_gap(m, x, y) == pytest.approx(0.0, abs=1e-9)
    # the pure pair (row 0, column 0): row 0's best reply to column 0 wins 3, column 1 holds row 0
    # to -1: a gap of 4
    assert nash_gap(m, one_hot(2, 0), one_hot(2, 0)) == pytest.approx(4.0)


def test_rock_paper_scissors_is_uniform_and_a_saddle_point_is_pure():
    x, y, value = solve_zero_sum([[0, 1, -1], [-1, 0, 1], [1, -1, 0]])
    np.testing.assert_allclose(x, [1 / 3] * 3, atol=1e-9)
    np.testing.assert_allclose(y, [1 / 3] * 3, atol=1e-9)
    assert value == pytest.approx(0.0, abs=1e-12)
    # attacker snapshot 0 dominates, defender snapshot 1 dominates: a pure equilibrium at 0.2
    x, y, value = solve_zero_sum([[0.9, 0.2], [0.5, 0.1]])
    np.testing.assert_allclose(x, [1, 0], atol=1e-9)
    np.testing.assert_allclose(y, [0, 1], atol=1e-9)
    assert value == pytest.approx(0.2)


def test_solver_refuses_bad_matrices():
    with pytest.raises(ValueError, match="non-finite"):
        solve_zero_sum([[0.1, float("nan")]])
    with pytest.raises(ValueError, match="2-D"):
        solve_zero_sum([0.1, 0.2])


# -- snapshots ------------------------------------------------------------------------------------


def _player(path, **kw) -> Player:
    cfg = DefenderConfig(
        model=str(path), generation={"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0}, **kw
    )
    return Player.build("defender", cfg, Accelerator(cpu=True), trainable=True, total_updates=4)


def _weights(player) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in player.unwrapped.policy.named_parameters()}


def test_a_snapshot_plays_and_the_player_gets_its_own_weights_back(tiny_models):
    player = _player(tiny_models["llama"])
    old = snapshots.take(player)
    with torch.no_grad():
        for p in player.unwrapped.policy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    own = _weights(player)
    torch.manual_seed(0)
    as_is = player.generate(["hello there", "how do i pick a lock ?"]).texts
    with snapshots.playing_as(player, old):
        now = _weights(player)
        assert all(torch.equal(now[n], old[n]) for n in old)
        torch.manual_seed(0)
        as_old = player.generate(["hello there", "how do i pick a lock ?"]).texts
    after = _weights(player)
    assert all(torch.equal(after[n], own[n]) for n in own)  # bit for bit
    assert as_old != as_is  # the snapshot's weights did the generating


def test_lora_average_is_the_mean_weight_update(tiny_models, tmp_path):
    """Exporting the average of LoRA snapshots gives the mean of the snapshots' merged models
    (merging is linear in the update B @ A; the mean of the factors would not be)."""
    player = _player(tiny_models["llama"], lora={"r": 4, "alpha": 8})
    states = []
    for k in range(3):
        with torch.no_grad():
            for _n, p in player.unwrapped.policy.named_parameters():
                if p.requires_grad:
                    p.copy_(torch.randn_like(p) * (0.3 + k))
        states.append(snapshots.take(player))
    merged = []
    for i, s in enumerate(states):
        with snapshots.playing_as(player, s):
            player.export(tmp_path / f"one-{i}")
        merged.append(load_file(str(tmp_path / f"one-{i}" / "model.safetensors")))
    snapshots.export_average(player, states, tmp_path / "avg")
    avg = load_file(str(tmp_path / "avg" / "model.safetensors"))
    changed = 0
    for name, t in avg.items():
        expected = torch.stack([m[name] for m in merged]).mean(0)
        torch.testing.assert_close(t, expected, rtol=1e-5, atol=1e-6)
        changed += not torch.equal(merged[0][name], merged[1][name])
    assert changed > 0  # the adapters did change some weights
    # the naive mean of the factors is a different model
    naive = snapshots.average(states)
    with snapshots.playing_as(player, naive):
        player.export(tmp_path / "naive")
    naive_w = load_file(str(tmp_path / "naive" / "model.safetensors"))
    assert any(not torch.allclose(naive_w[n], avg[n], atol=1e-4) for n in avg)


# -- eviction --------------------------------------------------------------------------------------


def _pools(opponent: str, size: int) -> Pools:
    return Pools(
        PoolConfig(opponent=opponent, size=size),
        players={},
        judge=None,
        seed_prompts=["p"],
        seed=0,
        acc=None,
    )


def test_eviction_oldest_or_least_weighted_by_nash():
    for rule, evicted in (("uniform", 0), ("nash", 1)):
        pools = _pools(rule, size=2)
        pools.members["defender"] = [Member(0, {}), Member(4, {})]
        pools.members["attacker"] = [Member(0, {}), Member(4, {}), Member(8, {})]
        # attacker 1 is dominated by attacker 0 (0.9 >= 0.2, 0.5 >= 0.1): Nash weight 0
        payoff = [[0.9, 0.5], [0.2, 0.1], [0.6, 0.4]]
        pools.payoff = {
            (a.id, d.id): payoff[i][j]
            for i, a in enumerate(pools.members["attacker"])
            for j, d in enumerate(pools.members["defender"])
        }
        pools._evict("attacker")
        kept = [m.id for m in pools.members["attacker"]]
        assert kept == [m for i, m in enumerate([0, 4, 8]) if i != evicted], rule
        assert all(a in kept for a, _ in pools.payoff)  # the evicted snapshot's payoffs go too


def test_opponent_draws_are_reproducible_and_follow_the_rule():
    pools = _pools("uniform", size=4)
    pools.members["attacker"] = [Member(0, {}), Member(4, {})]
    draws = [pools.opponent("defend", step)[1] for step in range(200)]
    again = [pools.opponent("defend", step)[1] for step in range(200)]
    assert [getattr(d, "id", None) for d in draws] == [getattr(d, "id", None) for d in again]
    counts = {k: sum(getattr(d, "id", None) == k for d in draws) for k in (0, 4, None)}
    assert all(40 < c < 95 for c in counts.values()), counts  # a third each
    latest = _pools("latest", size=4)
    latest.members["attacker"] = pools.members["attacker"]
    assert latest.opponent("defend", 3) == ("attacker", None)


# -- a game with a pool ----------------------------------------------------------------------------


def test_game_with_a_pool(run_data):
    data = run_data(
        rounds=4,
        pool={"opponent": "uniform", "every": 1, "size": 2, "payoff_prompts": 4},
    )
    game = Game(load_config(data=data))
    game.run()
    run = game.run_dir
    rows = read_jsonl(run / "metrics.jsonl")
    assert all(r["pool/attacker"] <= 2 and r["pool/defender"] <= 2 for r in rows)
    assert all(0 <= r["pool/value"] <= 1 and r["pool/gap"] >= 0 for r in rows)
    assert all(0 <= r["pool/payoff_se"] <= 0.5 for r in rows)  # 4 attacks per payoff
    assert any(r["pool/opponent_age"] > 0 for r in rows)  # a past snapshot played
    state = json.loads(next(run.glob("checkpoints/step-8/pool/pool.json")).read_text())
    assert state["steps"] == {"attacker": 4, "defender": 4}
    assert [len(v) for v in state["members"].values()] == [2, 2]
    assert len(state["payoff"]) == 4  # every pair of kept snapshots was played
    assert len(state["payoff_se"]) == 4


def test_a_pool_that_only_measures_never_changes_training(run_data, tmp_path):
    """``opponent: latest`` plays its payoffs on a forked RNG: the run trains exactly as one
    without a pool (the gpo arm of ``sparring experiment pools`` relies on it)."""
    runs = {}
    for name, pool in (("plain", None), ("measured", {"every": 1, "payoff_prompts": 4})):
        data = run_data(rounds=2, **({"pool": pool} if pool else {}))
        data["output_dir"] = str(tmp_path / name)
        Game(load_config(data=data)).run()
        rows = read_jsonl(tmp_path / name / "metrics.jsonl")
        runs[name] = (
            [{k: v for k, v in r.items() if not k.startswith(("time/", "pool/"))} for r in rows],
            read_jsonl(tmp_path / name / "samples.jsonl"),
        )
    assert "pool/gap" in read_jsonl(tmp_path / "measured" / "metrics.jsonl")[-1]
    assert runs["measured"] == runs["plain"]


def test_pool_needs_both_players_training(run_data):
    with pytest.raises(ConfigError, match="pool needs mode 'gpo'"):
        load_config(data=run_data(mode="rlhf", pool={"opponent": "uniform"}))


def test_pool_figures_without_a_full_game():
    pools = _pools("latest", size=2)
    pools.members["attacker"] = [Member(0, {})]
    assert pools.figures() == {"pool/attacker": 1.0, "pool/defender": 0.0}
    with pytest.raises(RuntimeError, match="not filled"):
        pools.mixtures()


# -- the population: unbounded, reservoir, payoff standard errors -------------------------------


def _offer(pools: Pools, role: str, n: int) -> list[int]:
    """Take ``n`` snapshots of ``role`` (no players: the weights are not what is tested)."""
    import sparring.game.pool as pool_module

    real = pool_module.snapshots.take
    pool_module.snapshots.take = lambda player: {}
    try:
        pools._add(role)  # the initial one
        for _ in range(n - 1):
            pools.steps[role] += pools.cfg.every
            pools._add(role)
    finally:
        pool_module.snapshots.take = real
    return [m.id for m in pools.members[role]]


def test_a_pool_without_a_size_keeps_every_snapshot():
    pools = Pools(
        PoolConfig(opponent="uniform", size=None, measure=False, every=2),
        players={"attacker": None},
        judge=None,
        seed_prompts=["p"],
        seed=0,
        acc=None,
    )
    assert _offer(pools, "attacker", 30) == list(range(0, 60, 2))


def test_a_reservoir_keeps_a_uniform_sample_of_every_snapshot_ever_taken():
    """Over many seeds, each of 20 snapshots is kept with probability size / 20 = 0.2 (a sliding
    window would keep only the last four); the newest is not favoured; draws are seeded."""
    kept = np.zeros(20)
    for seed in range(400):
        pools = Pools(
            PoolConfig(opponent="uniform", size=4, eviction="reservoir", measure=False, every=1),
            players={"attacker": None},
            judge=None,
            seed_prompts=["p"],
            seed=seed,
            acc=None,
        )
        ids = _offer(pools, "attacker", 20)
        assert len(ids) == 4
        kept[ids] += 1
    share = kept / 400
    assert np.all(np.abs(share - 0.2) < 0.07), share  # 400 draws: SD of a share is 0.02
    again = Pools(
        PoolConfig(opponent="uniform", size=4, eviction="reservoir", measure=False, every=1),
        players={"attacker": None},
        judge=None,
        seed_prompts=["p"],
        seed=7,
        acc=None,
    )
    first = _offer(again, "attacker", 20)
    again.members["attacker"], again.steps["attacker"] = [], 0
    assert _offer(again, "attacker", 20) == first


def test_payoff_estimate_and_its_standard_error():
    """Answers of one attack are averaged first; the SE is over attacks (hand values)."""
    from sparring.game.pool import payoff_estimate

    nan = float("nan")
    # 3 attacks x 2 answers: P(unsafe) per attack 0.5, 1.0, 0.0 (the NaN answer left out)
    value, se = payoff_estimate([0.5, 0.5, 0.0, nan, 1.0, 1.0], 2)
    assert value == pytest.approx(0.5)
    assert se == pytest.approx(np.std([0.5, 1.0, 0.0], ddof=1) / np.sqrt(3))
    assert payoff_estimate([nan, nan], 1)[0] is None
    assert np.isnan(payoff_estimate([0.2], 1)[1])


# -- deploying the Nash mixture -----------------------------------------------------------------


def test_a_mixture_draws_its_members_by_weight_and_by_name():
    from sparring.players.mixture import MixturePlayer

    mix = MixturePlayer("defender", [object(), object()], [0.25, 0.75])
    keys = [f"eval/1/set\x1f0\x1fprompt {i}" for i in range(4000)]
    chosen = mix.choose(keys, len(keys))
    assert abs(np.mean(chosen) - 0.75) < 0.03  # member 1 answers three requests in four
    assert mix.choose(keys[:50], 50) == chosen[:50]  # a named request keeps its member
    torch.manual_seed(0)
    unnamed = mix.choose(None, 4000)
    assert abs(np.mean(unnamed) - 0.75) < 0.03


def test_deploy_nash_writes_a_mixture_every_command_loads(run_data, tmp_path):
    """final/defender is the defender's Nash mixture over its snapshots: one model folder per
    snapshot it weighs, weights summing to 1; `sparring eval` evaluates it as one model, with
    the same answers each time (the member and the sample are both keyed)."""
    from sparring.evaluation.evaluate import evaluate_run
    from sparring.players.mixture import read_mixture

    data = run_data(
        rounds=3, pool={"opponent": "nash", "every": 1, "payoff_prompts": 4, "deploy": "nash"}
    )
    game = Game(load_config(data=data))
    game.run()
    final = game.run_dir / "final" / "defender"
    members = read_mixture(final)
    assert members and sum(w for _, w in members) == pytest.approx(1.0)
    assert all((path / "config.json").is_file() for path, _ in members)
    x, y = game.pools.mixtures()
    assert len(members) == int(np.sum(np.asarray(y) > 1e-9))
    first = evaluate_run(game.run_dir, samples=3, name="m1")
    second = evaluate_run(game.run_dir, samples=3, name="m2")
    assert first["players"]["defender"]["kind"] == "final"
    assert first["defender"]["sets"] == second["defender"]["sets"]
    rows = [json.loads(line) for line in (game.run_dir / "eval" / "m1.samples.jsonl").open()]
    again = [json.loads(line) for line in (game.run_dir / "eval" / "m2.samples.jsonl").open()]
    assert [r["response"] for r in rows] == [r["response"] for r in again]
    # a mixture folder is a model folder to every command: scan it as any model
    from sparring.evaluation.scan import scan

    seeds = data["game"]["seeds"]["path"]
    got = scan(
        str(final), prompts=[seeds], benign=None, samples=2, max_new_tokens=4, out=tmp_path / "s"
    )
    assert got["sets"][Path(seeds).stem]["n"] == 2
    # exploitability of what was deployed: a fresh attacker trains against the mixture itself
    from sparring.experiments.exploit import exploit

    probe = exploit(game.run_dir, steps=1, probes=1, progress=False)
    assert probe["n_probes"] == 1 and probe["asr_fresh"] is not None
    probe_run = game.run_dir / "exploit" / "probe-0"
    assert read_mixture(probe_run / "final" / "defender")  # handed back as it was found


def test_deploy_nash_needs_the_measured_game():
    with pytest.raises(ValueError, match="deploy: nash needs the empirical game"):
        PoolConfig(opponent="uniform", measure=False, deploy="nash")


# -- the evaluation judge beside the training judge's payoffs ---------------------------------


def test_the_eval_judge_reads_the_training_judges_game():
    """``pool/eval_judge/value`` is what the training judge's Nash mixtures score under the
    evaluation judge's payoffs: x = (0.3, 0.7), y = (0.4, 0.6) solve the training game (hand
    solved: 0.6x + 0.3 = -0.4x + 0.6 and 0.7y + 0.2 = -0.3y + 0.6), and under the evaluation
    payoffs they score 0.3 * (0.4 * 1 + 0.6 * 0) + 0.7 * (0.4 * 0.5 + 0.6 * 0.25) = 0.365."""
    pools = Pools(
        PoolConfig(eval_judge=True),
        players={},
        judge=None,
        eval_judge=object(),
        seed_prompts=["p"],
        seed=0,
        acc=None,
    )
    pools.members = {r: [Member(0, {}), Member(4, {})] for r in ("attacker", "defender")}
    train = [[0.9, 0.2], [0.3, 0.6]]
    evals = [[1.0, 0.0], [0.5, 0.25]]
    for i, a in enumerate((0, 4)):
        for j, d in enumerate((0, 4)):
            pools.payoff[(a, d)], pools.payoff_eval[(a, d)] = train[i][j], evals[i][j]
    out = pools.figures()
    assert out["pool/value"] == pytest.approx(0.48)
    assert out["pool/eval_judge/value"] == pytest.approx(0.365)
    assert out["pool/eval_judge/defender_exploit"] == pytest.approx(0.25)
    assert out["pool/defender_exploit"] == pytest.approx(0.6)
    off = Pools(PoolConfig(), players={}, judge=None, eval_judge=object(), seed_prompts=["p"],
                seed=0, acc=None)  # fmt: skip
    assert off.eval_judge is None  # the setting is off by default: no judge calls


def test_the_eval_judge_scores_payoffs_without_changing_training(run_data, tmp_path):
    runs = {}
    for name, on in (("off", False), ("on", True)):
        data = run_data(rounds=2, pool={"every": 1, "payoff_prompts": 4, "eval_judge": on})
        data["eval_judge"] = {"type": "callable", "target": "sparring.testing:hashed_judge"}
        data["output_dir"] = str(tmp_path / name)
        game = Game(load_config(data=data))
        if on:  # record what the evaluation judge is shown
            judge, shown = game.pools.eval_judge, []
            game.pools.eval_judge = SimpleNamespace(
                name=judge.name, score=lambda p, r, j=judge, s=shown: s.append(p) or j.score(p, r)
            )
        game.run()
        runs[name] = read_jsonl(tmp_path / name / "metrics.jsonl")
    # behaviour-grounded: every answer is judged against the payoff seed its attack rewrote
    assert shown and all(batch == game.pools.payoff_seeds for batch in shown)
    strip = [
        {k: v for k, v in r.items() if not k.startswith(("time/", "pool/eval"))} for r in runs["on"]
    ]
    assert strip == [{k: v for k, v in r.items() if not k.startswith("time/")} for r in runs["off"]]
    assert not any("pool/eval_judge/value" in r for r in runs["off"])
    assert all(0 <= r["pool/eval_judge/value"] <= 1 for r in runs["on"])
    state = json.loads(
        next((tmp_path / "on").glob("checkpoints/step-4/pool/pool.json")).read_text()
    )
    assert {(a, d) for a, d, _ in state["payoff_eval"]} == {(a, d) for a, d, _ in state["payoff"]}
    # hashed_judge gives 0.1 or 0.9: a payoff of 4 attacks is a multiple of 0.2 from 0.1
    assert all(
        abs((v - 0.1) / 0.2 - round((v - 0.1) / 0.2)) < 1e-9 for *_, v in state["payoff_eval"]
    )
