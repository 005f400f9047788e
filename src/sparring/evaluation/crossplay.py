"""``sparring crossplay``: every saved attacker against every saved defender.

Each attacker (step-0 = initial model, then every checkpoint that holds one) writes attacks on
the same seeded sample of seed prompts; each defender answers every attacker's attacks; the
judge (and the eval judge, if configured) scores. Cell [i][j] is the attack success rate of
attacker i against defender j. Runs keep only ``checkpoint.keep_last`` checkpoints: raise it
(and lower ``checkpoint.every``) before training for a fuller matrix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sparring._files import read_json_object
from sparring.evaluation import metrics as M
from sparring.evaluation.evaluate import (
    _progress,
    _Tasks,
    build_judges,
    clean_attacks,
    load_run_config,
    make_accelerator,
    score,
    seed_all,
    seeds_for_attacks,
)
from sparring.evaluation.players import free, generate_all, load_player, role_sources

SCHEMA = "sparring.crossplay/1"


def crossplay(
    run_dir: str | Path,
    *,
    samples: int = 32,
    seed: int = 1234,
    batch_size: int | None = None,
    judge=None,
    eval_judge=None,
    progress: bool = False,
    accelerator=None,
    write: bool = True,
) -> dict[str, Any]:
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    acc = accelerator or make_accelerator(cfg)
    bs = batch_size or max(cfg.game.batch_size, 8)
    t0 = time.perf_counter()
    from sparring.data import load_prompts

    s = cfg.game.seeds
    pool = load_prompts(s.path, source=s.source, field=s.field, split=s.split, limit=s.limit)
    seeds = seeds_for_attacks(pool, samples, seed)
    judge, eval_judge = build_judges(cfg, judge, eval_judge)
    attackers = role_sources(run_dir, "attacker")
    defenders = role_sources(run_dir, "defender")
    attacks: list[list[str]] = []
    with _progress(progress) as prog:
        tasks = _Tasks(prog)
        for src in attackers:
            seed_all(seed)
            player = load_player("attacker", cfg.attacker, acc, src)
            raw, _ = generate_all(
                player, seeds, bs, on_batch=tasks.start(f"attacker {src.label}", len(seeds))
            )
            attacks.append(clean_attacks(player, cfg, raw, seeds))
            free(player)
        flat = [a for group in attacks for a in group]
        asr: list[list[float | None]] = [[None] * len(defenders) for _ in attackers]
        asr_eval: list[list[float | None]] | None = (
            [[None] * len(defenders) for _ in attackers] if eval_judge is not None else None
        )
        p_safe: list[list[float | None]] = [[None] * len(defenders) for _ in attackers]
        for j, src in enumerate(defenders):
            seed_all(seed + 1)
            player = load_player("defender", cfg.defender, acc, src)
            responses, _ = generate_all(
                player, flat, bs, on_batch=tasks.start(f"defender {src.label}", len(flat))
            )
            free(player)
            js = score(judge, flat, responses).p_safe
            es = score(eval_judge, flat, responses).p_safe if eval_judge is not None else None
            for i in range(len(attackers)):
                sl = slice(i * len(seeds), (i + 1) * len(seeds))
                asr[i][j] = M.attack_success_rate(js[sl])
                p_safe[i][j] = M.mean_p_safe(js[sl])
                if asr_eval is not None:
                    asr_eval[i][j] = M.attack_success_rate(es[sl])
    result = {
        "schema": SCHEMA,
        "run_dir": str(run_dir),
        "samples": samples,
        "seed": seed,
        "attackers": [a.label for a in attackers],
        "defenders": [d.label for d in defenders],
        "judges": {
            "judge": judge.name,
            "eval_judge": eval_judge.name if eval_judge is not None else None,
        },
        "asr": asr,
        "p_safe": p_safe,
        "asr_eval": asr_eval,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if write:
        folder = run_dir / "eval"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "crossplay.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        from sparring.evaluation.plots import crossplay_heatmap

        crossplay_heatmap(result, folder / "crossplay.png")
        if asr_eval is not None:
            crossplay_heatmap(result, folder / "crossplay_eval.png", key="asr_eval")
    return result


def read_crossplay(run_dir: Path) -> dict[str, Any] | None:
    data = read_json_object(Path(run_dir) / "eval" / "crossplay.json")
    return data if data is not None and data.get("schema") == SCHEMA else None
