"""Two CPU processes (gloo) play the same tiny game as one process with the same global batch.

Sampling is made deterministic by construction (``top_k: 1``), so rank r of the 2-process run
generates exactly what rows [r*b:(r+1)*b] of the 1-process run generate: the seeds are sampled
globally and sliced per rank, and the generated texts no longer depend on each rank's RNG. Then:

- the policies (and value heads) hold identical parameters on both ranks after training;
- the first step's metrics, taken before any update, equal the 1-process run's;
- later steps match within a tolerance: per-rank advantage whitening and token-mean losses
  averaged over ranks differ slightly from the 1-process batch statistics, so the updates are
  close but not bit-identical.

The file doubles as the worker script (``python -m torch.distributed.run ... this_file``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve()


def _checksums(game) -> dict[str, float]:
    out = {}
    for role in ("attacker", "defender"):
        player = getattr(game, role)
        if player is None:
            continue
        total = 0.0
        for i, (_, p) in enumerate(sorted(player.unwrapped.named_parameters())):
            # index-weighted sums: a swap of two tensors' values changes the checksum
            flat = p.detach().double().flatten()
            total += (i + 1) * float(flat.sum()) + float(flat.abs().sum())
        out[role] = total
    return out


def _schedules(game) -> dict[str, dict]:
    return {
        p.role: {"updates": p.scheduler.last_epoch, "lr": p.scheduler.get_last_lr()[0]}
        for p in (game.attacker, game.defender)
        if p is not None and p.trainable
    }


def worker(
    config_path: str, out_dir: str, stepwise: bool = False, resume: bool = False,
    signal_at: int | None = None,
) -> None:  # fmt: skip
    """Play the run (or, ``stepwise``, its steps one by one, recording after each step which
    player's weights moved) and write this rank's figures to ``out_dir/rank-N.json``. With
    ``signal_at``, rank 0 alone is sent SIGTERM while it plays that step."""
    from sparring.config import load_config
    from sparring.game.loop import Game

    cfg = load_config(config_path)
    game = Game(cfg, progress=False, resume=resume)
    stopped = None
    if signal_at is not None and game.acc.process_index == 0:
        import signal

        play = game.play_step

        def play_and_signal(planned):
            if planned.step == signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return play(planned)

        game.play_step = play_and_signal
    drawn = []  # the opponent snapshot each step drew (None: the current weights)
    if game.pools is not None:
        draw = game.pools.opponent

        def spy(stage, step):
            role, member = draw(stage, step)
            drawn.append(None if member is None else member.id)
            return role, member

        game.pools.opponent = spy
    start = _checksums(game)
    moved = []
    if stepwise:
        for planned in game.plan:
            before = _checksums(game)
            game.play_step(planned)
            after = _checksums(game)
            moved.append({role: after[role] != before[role] for role in after})
    else:
        try:
            game.run()
        except KeyboardInterrupt as exc:  # a signal's clean stop
            stopped = {"message": str(exc), "step": game.step}
    end = _checksums(game)
    rank = game.acc.process_index
    Path(out_dir, f"rank-{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world": game.acc.num_processes,
                "distributed_type": str(game.acc.distributed_type),
                "engines": sorted({id(a) for a in game.engines.values()}).__len__(),
                "checksums": end,
                "changed": {role: end[role] != start[role] for role in end},
                "moved": moved,
                "schedules": _schedules(game),
                "drawn": drawn,
                "stopped": stopped,
                # DeepSpeed engines clip by their own config: each player's, or nothing
                "clipping": {
                    pl.role: pl.module.gradient_clipping()
                    for pl in (game.attacker, game.defender)
                    if pl is not None and hasattr(pl.module, "gradient_clipping")
                },
            }
        )
    )


def _config(tiny_models, seed_file, out: Path, *, pool: dict | None = None) -> Path:
    data = {
        "name": "dist",
        "seed": 0,
        "output_dir": str(out),
        "attacker": {
            "model": str(tiny_models["gpt2"]),
            "lr": 1e-3,
            "generation": {"max_new_tokens": 6, "top_k": 1},
        },
        "defender": {
            "model": str(tiny_models["llama"]),
            "lr": 1e-3,
            "generation": {"max_new_tokens": 6, "top_k": 1},
        },
        "judge": {"type": "callable", "target": "sparring.testing:keyword_judge"},
        "game": {"rounds": 2, "batch_size": 4, "seeds": {"path": str(seed_file)}},
        "accelerate": {"cpu": True},
        "checkpoint": {"every": 100, "keep_last": 1},
        "logging": {"progress": False, "tensorboard": False},
    }
    if pool:
        data["game"]["pool"] = pool
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _launch(
    nproc: int,
    config: Path,
    out: Path,
    *,
    stepwise: bool = False,
    deepspeed: bool = False,
    resume: bool = False,
    kill_at: str | None = None,
    fsdp: bool = False,
    signal_at: int | None = None,
) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if kill_at:
        env["SPARRING_KILL_AT"] = kill_at
    mode = "stepwise" if stepwise else "resume" if resume else "run"
    if signal_at is not None:
        mode = f"signal-{signal_at}"
    tail = [str(config), str(out), mode]
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(nproc),
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if fsdp:
        cmd = [*launch, "--use_fsdp", "--fsdp_version", "2", str(HERE), *tail]
    elif deepspeed:
        env["DS_ACCELERATOR"] = "cpu"
        ds = ["--use_deepspeed", "--zero_stage", "2", "--gradient_accumulation_steps", "1"]
        cmd = [*launch, *ds, str(HERE), *tail]
    elif nproc == 1:
        cmd = [sys.executable, str(HERE), *tail]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            "0",
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            "127.0.0.1:0",
            str(HERE),
            *tail,
        ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if kill_at or fsdp:
        assert proc.returncode != 0, "the run was meant to fail"
        return proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _metrics(run: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]


EXACT = ("p_safe", "asr", "len/attack", "len/response", "reward", "novelty/selfbleu")


@pytest.mark.slow  # ~30 s of CPU for two launches; minutes of wall time on a busy 2-core machine
def test_two_processes_match_one(tiny_models, seed_file, tmp_path):
    one_cfg = _config(tiny_models, seed_file, tmp_path / "one")
    two_cfg = _config(tiny_models, seed_file, tmp_path / "two")
    _launch(1, one_cfg, tmp_path / "out1")
    _launch(2, two_cfg, tmp_path / "out2")

    ranks = [json.loads((tmp_path / "out2" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # data parallel: every rank ends with the same weights, bit for bit
    assert ranks[0]["checksums"] == ranks[1]["checksums"]

    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two]
    assert [r["history"] for r in one] == [
        r["history"] for r in two
    ]  # union of both ranks' attacks
    for key in EXACT:  # first step: nothing has been updated yet, same texts, same judge
        assert two[0][key] == pytest.approx(one[0][key], abs=1e-6), key
    for a, b in zip(one[1:], two[1:], strict=True):
        for key in ("p_safe", "len/attack", "len/response"):
            assert b[key] == pytest.approx(a[key], abs=0.35), (a["step"], key)
    # the checkpoint is written once (by the main process) and is complete
    ckpts = list((tmp_path / "two" / "checkpoints").iterdir())
    assert len(ckpts) == 1


@pytest.mark.slow  # one launch of 2 processes
def test_two_processes_draw_the_same_opponents_from_a_pool(tiny_models, seed_file, tmp_path):
    """Every rank plays the same snapshot each step (the draws are seeded by the step, the
    payoffs broadcast from rank 0), so the data-parallel gradients stay those of one model."""
    pool = {"opponent": "uniform", "every": 1, "size": 2, "payoff_prompts": 2}
    cfg = _config(tiny_models, seed_file, tmp_path / "pool", pool=pool)
    _launch(2, cfg, tmp_path / "out")
    ranks = _ranks(tmp_path / "out")
    assert ranks[0]["drawn"] == ranks[1]["drawn"]
    assert len(ranks[0]["drawn"]) == 4 and any(d is not None for d in ranks[0]["drawn"])
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    rows = _metrics(tmp_path / "pool")
    assert [r["pool/attacker"] for r in rows] == [1.0, 2.0, 2.0, 2.0]
    assert all(r["pool/gap"] >= 0 for r in rows)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(out: Path, world: int = 2) -> list[dict]:
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(world)]


@pytest.mark.slow  # two launches of 2 + 1 processes
def test_two_processes_accumulate_and_schedule_like_one(tiny_models, seed_file, tmp_path):
    """Gradient accumulation 2 and a warmup + linear schedule on 2 processes: both players
    step, each has its own engine, and each schedule stands where a 1-process run's stands
    after the same number of updates (accelerate's prepared scheduler stepped once per process
    per update: warmup and decay ran twice as fast)."""
    configs = []
    for name in ("one", "two"):
        path = _config(tiny_models, seed_file, tmp_path / name)
        data = yaml.safe_load(path.read_text())
        data["game"]["rounds"] = 3
        data["accelerate"]["gradient_accumulation_steps"] = 2
        for role in ("attacker", "defender"):
            data[role].update({"schedule": "linear", "warmup_steps": 2})
            data[role]["rl"] = {"minibatch_size": 1}  # 2 rows per rank: 2 minibatches, 1 step
        # the final evaluation shares its generation over the ranks (blocks of 2 and 1 texts)
        data["evaluation"] = {"at_end": True, "samples": 3, "max_new_tokens": 6}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        configs.append(path)
    _launch(1, configs[0], tmp_path / "out1")
    _launch(2, configs[1], tmp_path / "out2")
    (one,) = _ranks(tmp_path / "out1", 1)
    two = _ranks(tmp_path / "out2")
    assert two[0]["checksums"] == two[1]["checksums"]
    final = json.loads((tmp_path / "two" / "eval" / "final.json").read_text())
    assert final["defender"]["sets"]["attacks"]["n"] == 3
    for r in (one, *two):
        assert r["engines"] == 2
        assert r["changed"] == {"attacker": True, "defender": True}
    # 1 process: 4 rows, minibatches of 1, 2 per step -> 2 steps per stage step, 3 stage steps
    assert one["schedules"]["attacker"]["updates"] == 6
    # 2 processes: 2 rows per rank -> 1 step per stage step
    for role in ("attacker", "defender"):
        s = two[0]["schedules"][role]
        assert s["updates"] == 3, role
        # linear with 2 warmup steps over 3 updates: lr * (3 - 3) / (3 - 2) = 0 at the end,
        # and 0.5 * lr after the first update: the schedule spans the run's own updates
        assert s["lr"] == pytest.approx(0.0, abs=1e-12), role


@pytest.mark.slow  # DeepSpeed's CPU accelerator; the first launch builds its shm op (~1 min)
def test_deepspeed_zero2_gives_each_player_its_own_engine(tiny_models, seed_file, tmp_path):
    """ZeRO-2 on 2 CPU processes: a defend step moves the defender alone, an attack step the
    attacker alone (with one engine for both, the defender never learned), both ranks hold the
    same weights, and each engine clips at its own player's rl.max_grad_norm."""
    pytest.importorskip("deepspeed")
    path = _config(tiny_models, seed_file, tmp_path / "ds")
    data = yaml.safe_load(path.read_text())
    data["game"]["rounds"] = 2
    data["accelerate"] = {"cpu": False}
    data["defender"]["rl"] = {"max_grad_norm": 0.5}
    data["attacker"]["rl"] = {"max_grad_norm": 2.0}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    _launch(2, path, tmp_path / "out", stepwise=True, deepspeed=True)
    ranks = _ranks(tmp_path / "out")
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    for r in ranks:
        assert r["distributed_type"] == "DistributedType.DEEPSPEED" and r["world"] == 2
        assert r["engines"] == 2
        assert r["clipping"] == {"attacker": 2.0, "defender": 0.5}  # each its own setting
        assert (
            r["moved"]
            == [
                {"attacker": False, "defender": True},
                {"attacker": True, "defender": False},
            ]
            * 2
        )


@pytest.mark.slow  # one launch
def test_fsdp_without_gpus_is_refused_not_run_undistributed(tiny_models, seed_file, tmp_path):
    """accelerate sets up no data parallelism for FSDP on a machine without a GPU: each process
    would train its own players. The run stops with an error that says so."""
    path = _config(tiny_models, seed_file, tmp_path / "fsdp")
    data = yaml.safe_load(path.read_text())
    data["accelerate"] = {"cpu": False}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    proc = _launch(2, path, tmp_path / "out", fsdp=True)
    assert "accelerate distributes nothing between them" in proc.stderr
    assert not (tmp_path / "out" / "rank-0.json").exists()


@pytest.mark.slow  # three DeepSpeed launches
def test_deepspeed_run_killed_then_resumed_is_exact(tiny_models, seed_file, tmp_path):
    """ZeRO-2 shards the optimiser state over the processes: every process saves its shard
    through the engine's checkpoint, so a run killed after step 3 and resumed from step 2
    ends with the uninterrupted run's metrics and weights."""
    pytest.importorskip("deepspeed")
    from sparring.runs import read_jsonl

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    runs = {}
    for name in ("straight", "killed"):
        path = _config(tiny_models, seed_file, tmp_path / name)
        data = yaml.safe_load(path.read_text())
        data["accelerate"] = {"cpu": False}
        data["checkpoint"] = {"every": 2, "keep_last": 2}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        runs[name] = path
    _launch(2, runs["straight"], tmp_path / "o1", deepspeed=True)
    _launch(2, runs["killed"], tmp_path / "o2", deepspeed=True, kill_at="after-metrics:3")
    assert (tmp_path / "killed" / "checkpoints" / "step-2" / "defender" / "deepspeed").is_dir()
    _launch(2, tmp_path / "killed" / "config.yaml", tmp_path / "o2", deepspeed=True, resume=True)
    expected = strip(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))
    got = strip(read_jsonl(tmp_path / "killed" / "metrics.jsonl"))
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert got == expected
    assert _ranks(tmp_path / "o1")[0]["checksums"] == _ranks(tmp_path / "o2")[0]["checksums"]


@pytest.mark.slow  # three launches
def test_a_signal_to_one_process_stops_every_process_after_the_same_step(
    tiny_models, seed_file, tmp_path
):
    """SIGTERM reaches rank 0 alone (a scheduler signalling one node first): both processes
    finish the step, agree to stop after it, write one checkpoint of it together, and the
    resumed run ends with the uninterrupted run's metrics and weights."""
    from sparring.runs import latest_checkpoint, read_jsonl

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    straight = _config(tiny_models, seed_file, tmp_path / "straight")
    _launch(2, straight, tmp_path / "o1")
    stopped = _config(tiny_models, seed_file, tmp_path / "stopped")
    _launch(2, stopped, tmp_path / "o2", signal_at=2)
    ranks = _ranks(tmp_path / "o2")
    assert [r["stopped"]["step"] for r in ranks] == [2, 2]
    assert "resume with `sparring train --resume" in ranks[0]["stopped"]["message"]
    assert latest_checkpoint(tmp_path / "stopped")[0] == 2
    assert [r["step"] for r in read_jsonl(tmp_path / "stopped" / "metrics.jsonl")] == [1, 2]
    _launch(2, tmp_path / "stopped" / "config.yaml", tmp_path / "o3", resume=True)
    expected = strip(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))
    assert strip(read_jsonl(tmp_path / "stopped" / "metrics.jsonl")) == expected
    assert _ranks(tmp_path / "o1")[0]["checksums"] == _ranks(tmp_path / "o3")[0]["checksums"]


if __name__ == "__main__":
    mode = sys.argv[3]
    worker(
        sys.argv[1], sys.argv[2], stepwise=mode == "stepwise", resume=mode == "resume",
        signal_at=int(mode.split("-")[1]) if mode.startswith("signal-") else None,
    )  # fmt: skip
