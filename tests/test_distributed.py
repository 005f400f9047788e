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


def worker(config_path: str, out_dir: str) -> None:
    from sparring.config import load_config
    from sparring.game.loop import Game

    cfg = load_config(config_path)
    game = Game(cfg, progress=False)
    game.run()
    rank = game.acc.process_index
    Path(out_dir, f"rank-{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world": game.acc.num_processes,
                "checksums": _checksums(game),
            }
        )
    )


def _config(tiny_models, seed_file, out: Path) -> Path:
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
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _launch(nproc: int, config: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if nproc == 1:
        cmd = [sys.executable, str(HERE), str(config), str(out)]
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
            str(config),
            str(out),
        ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


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


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
