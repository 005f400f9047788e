"""What opponent pools and the round probe cost: a tiny game with and without them, side by side.

Run:  python benchmarks/pools.py [--rounds 6] [--repeats 3]

Every variant plays the same tiny game (the crash trials' random tiny GPT-2 attacker and Llama
defender built locally and their seed prompts, the keyword judge, 4 seeds per step) in one process, in turn, ``--repeats`` times; each
row is the median wall time of the whole run and its ratio to the plain game measured in the
same process. Variants: a pool that only measures (``opponent: latest``, the cost of the
empirical game), pools that draw opponents (``uniform``, ``nash``), and the round probe.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POOL = {"every": 2, "size": 4, "payoff_prompts": 8}


def variants(seeds: Path) -> dict[str, dict]:
    return {
        "plain": {},
        "pool, measure only": {"game": {"pool": {**POOL, "opponent": "latest"}}},
        "pool, uniform": {"game": {"pool": {**POOL, "opponent": "uniform"}}},
        "pool, nash": {"game": {"pool": {**POOL, "opponent": "nash"}}},
        "round probe": {"evaluation": {"probe": {"prompts": [str(seeds)], "samples": 6}}},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    from faults import prepare  # the crash trials' tiny models and seed prompts

    from sparring.config import load_config
    from sparring.game.loop import Game

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="sparring-pools-"))
    models, seeds = prepare(root)

    def config(name: str, extra: dict, i: int):
        data = {
            "name": "bench",
            "seed": 0,
            "output_dir": str(root / "runs" / f"{name.replace(' ', '_')}-{i}"),
            "attacker": {"model": str(models["gpt2"]), "generation": {"max_new_tokens": 16}},
            "defender": {"model": str(models["llama"]), "generation": {"max_new_tokens": 16}},
            "judge": {"type": "callable", "target": "sparring.testing:keyword_judge"},
            "game": {"rounds": args.rounds, "batch_size": 4, "seeds": {"path": str(seeds)}},
            "checkpoint": {"every": 1000, "keep_last": 1},
            "logging": {"progress": False, "tensorboard": False},
        }
        for section, values in extra.items():
            data.setdefault(section, {}).update(values)
        return load_config(data=data)

    times: dict[str, list[float]] = {name: [] for name in variants(seeds)}
    for i in range(args.repeats):
        for name, extra in variants(seeds).items():  # interleaved: drift hits every variant
            t0 = time.perf_counter()
            Game(config(name, extra, i), progress=False).run()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"{args.rounds} rounds (defend + attack), median of {args.repeats} runs, pool {POOL}")
    print(f"{'variant':22s} {'seconds':>8s} {'x plain':>8s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:22s} {m:8.2f} {m / base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
