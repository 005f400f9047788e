"""Do two run folders hold the same run? For refactors that must not change behaviour.

    python benchmarks/same_run.py RUN_A RUN_B [--noise RUN_C RUN_D]

Prints, for RUN_A against RUN_B: the steps of each, whether ``metrics.jsonl`` is byte-identical,
whether every sample's texts (seed, attack, response) are identical, and the largest absolute
difference of any metric (``time/*`` left out: wall time differs between any two runs). With
``--noise``, the same figures for two runs of one commit (C and D), the floor of what differs
between runs on this machine: a refactor that changes nothing shows differences no larger.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

TEXT_KEYS = ("seed", "attack_raw", "attack", "prompt", "response")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def compare(a: Path, b: Path) -> dict:
    ma, mb = _rows(a / "metrics.jsonl"), _rows(b / "metrics.jsonl")
    sa, sb = _rows(a / "samples.jsonl"), _rows(b / "samples.jsonl")
    texts_same = len(sa) == len(sb) and all(
        all(x.get(k) == y.get(k) for k in TEXT_KEYS) for x, y in zip(sa, sb, strict=True)
    )
    worst, worst_key, keys_differ = 0.0, None, set()
    for x, y in zip(ma, mb, strict=False):
        for k in set(x) | set(y):
            if k.startswith("time/"):
                continue
            u, v = x.get(k), y.get(k)
            if isinstance(u, int | float) and isinstance(v, int | float):
                if math.isnan(u) and math.isnan(v):
                    continue
                d = abs(u - v)
                if d > 0:
                    keys_differ.add(k)
                if d > worst:
                    worst, worst_key = d, k
            elif u != v:
                keys_differ.add(k)
                worst, worst_key = math.inf, k
    sample_scores = max(
        (
            abs(x["p_safe"] - y["p_safe"])
            for x, y in zip(sa, sb, strict=False)
            if isinstance(x.get("p_safe"), float) and isinstance(y.get("p_safe"), float)
        ),
        default=0.0,
    )
    return {
        "steps": (len(ma), len(mb)),
        "metrics byte-identical": (a / "metrics.jsonl").read_bytes()
        == (b / "metrics.jsonl").read_bytes(),
        "samples": (len(sa), len(sb)),
        "every sample's texts identical": texts_same,
        "largest metric difference": worst,
        "at": worst_key,
        "metrics that differ at all": sorted(keys_differ),
        "largest P(safe) difference in samples": sample_scores,
    }


def _print(title: str, result: dict) -> None:
    print(title)
    for k, v in result.items():
        print(f"  {k}: {v}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--noise", nargs=2, type=Path, metavar=("C", "D"))
    args = p.parse_args()
    _print(f"{args.a} vs {args.b}", compare(args.a, args.b))
    if args.noise:
        _print(f"noise floor: {args.noise[0]} vs {args.noise[1]}", compare(*args.noise))


if __name__ == "__main__":
    main()
