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
    build_judges,
    load_run_config,
    score,
    seeds_for_attacks,
)
from sparring.evaluation.players import (
    eval_batch_size,
    free,
    generate_all,
    load_player,
    role_sources,
    target_source,
)
from sparring.players.engine import make_accelerator
from sparring.players.sampling import sample_keys
from sparring.runtime import Tasks, progress_bar, quiet_libraries

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
    against=(),
) -> dict[str, Any]:
    """Every saved attacker of the run against every saved defender, plus the frozen
    ``against`` targets (model folders or served models ``openai:MODEL@URL``) as columns."""
    quiet_libraries()
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    acc = accelerator or make_accelerator(cfg.accelerate)
    bs = batch_size or eval_batch_size(cfg)
    t0 = time.perf_counter()
    from sparring.data import load_prompts

    s = cfg.game.seeds
    pool = load_prompts(s.path, source=s.source, field=s.field, split=s.split, limit=s.limit)
    seeds = seeds_for_attacks(pool, samples, seed)
    judge, eval_judge = build_judges(cfg, judge, eval_judge)
    attackers = role_sources(run_dir, "attacker")
    defenders = role_sources(run_dir, "defender")
    for target in against:
        defenders.append(target_source(target, {d.label for d in defenders}))
    matrix = play_matrix(
        [(src, cfg.attacker) for src in attackers],
        [(src, cfg.defender) for src in defenders],
        seeds,
        judge=judge,
        eval_judge=eval_judge,
        accelerator=acc,
        batch_size=bs,
        seed=seed,
        progress=progress,
    )
    asr, p_safe, asr_eval = matrix["asr"], matrix["p_safe"], matrix["asr_eval"]
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


def play_matrix(
    attackers,
    defenders,
    seeds: list[str],
    *,
    judge,
    eval_judge=None,
    accelerator,
    batch_size: int,
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Attackers x defenders: each attacker ``(Source, PlayerConfig)`` writes one attack per seed
    prompt (cleaned as in training), every defender answers every attack, the judges score.
    Returns ``{"asr", "p_safe", "asr_eval"}``: [attacker][defender] matrices (``asr_eval`` None
    without an eval judge), and ``"attacks"``, the cleaned attacks of each attacker."""
    acc, bs = accelerator, batch_size
    attacks: list[list[str]] = []
    with progress_bar(progress) as prog:
        tasks = Tasks(prog)
        for src, player_cfg in attackers:
            player = load_player("attacker", player_cfg, acc, src)
            raw, _ = generate_all(
                player,
                seeds,
                bs,
                keys=sample_keys(f"crossplay/{seed}/attacker", seeds),
                on_batch=tasks.start(f"attacker {src.label}", len(seeds)),
            )
            attacks.append(player.clean_texts(raw, seeds).texts)
            free(player)
        flat = [a for group in attacks for a in group]
        n_a, n_d = len(attackers), len(defenders)
        asr: list[list[float | None]] = [[None] * n_d for _ in range(n_a)]
        asr_eval = [[None] * n_d for _ in range(n_a)] if eval_judge is not None else None
        p_safe: list[list[float | None]] = [[None] * n_d for _ in range(n_a)]
        answer_keys = sample_keys(f"crossplay/{seed}/answers", flat)
        for j, (src, player_cfg) in enumerate(defenders):
            player = load_player("defender", player_cfg, acc, src)
            responses, _ = generate_all(
                player,
                flat,
                bs,
                keys=answer_keys,
                on_batch=tasks.start(f"defender {src.label}", len(flat)),
            )
            free(player)
            js = score(judge, flat, responses).p_safe
            es = score(eval_judge, flat, responses).p_safe if eval_judge is not None else None
            for i in range(n_a):
                sl = slice(i * len(seeds), (i + 1) * len(seeds))
                asr[i][j] = M.attack_success_rate(js[sl])
                p_safe[i][j] = M.mean_p_safe(js[sl])
                if asr_eval is not None:
                    asr_eval[i][j] = M.attack_success_rate(es[sl])
    return {"asr": asr, "p_safe": p_safe, "asr_eval": asr_eval, "attacks": attacks}


def read_crossplay(run_dir: Path) -> dict[str, Any] | None:
    data = read_json_object(Path(run_dir) / "eval" / "crossplay.json")
    return data if data is not None and data.get("schema") == SCHEMA else None
