"""The common attack set of an experiment: in each seed, the untrained attacker and every arm's
final attacker write attacks on the same seed prompts, and every arm's final defender answers
all of them (Table 3 of the results: who is robust to whose attacks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparring.config import RunConfig


def common_attack_set(
    base: RunConfig,
    results: dict[str, list[dict[str, Any]]],
    seed_index: int,
    *,
    attacker_arms: tuple[str, ...],
    out: Path,
    samples: int,
    judge=None,
    progress: bool = False,
) -> dict[str, Any]:
    """One attack set for every defender of one seed: the untrained attacker and every arm's
    final attacker each write ``samples`` attacks on the same seed prompts; every arm's final
    defender answers all of them; the evaluation judge (else the judge) scores. ``asr[i][j]`` is
    attacker i against defender j (``attacker_arms``: the arms whose attacker trains). Cached in
    ``OUT/common-seed-<i>.json``."""
    path = out / f"common-seed-{seed_index}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    from sparring.data import load_prompts
    from sparring.evaluation.crossplay import play_matrix
    from sparring.evaluation.evaluate import build_judges, seeds_for_attacks
    from sparring.evaluation.players import Source, eval_batch_size, player_source
    from sparring.players.engine import make_accelerator

    runs = {arm: Path(entries[seed_index]["run_dir"]) for arm, entries in results.items()}
    attackers = [("initial", Source("initial", None, "initial"))]
    attackers += [(a, player_source(runs[a], "attacker")) for a in attacker_arms if a in runs]
    defenders = [(a, player_source(d, "defender")) for a, d in runs.items()]
    s = base.game.seeds
    pool = load_prompts(s.path, source=s.source, field=s.field, split=s.split, limit=s.limit)
    judge, eval_judge = build_judges(base, judge)
    matrix = play_matrix(
        [(src, base.attacker) for _, src in attackers],
        [(src, base.defender) for _, src in defenders],
        seeds_for_attacks(pool, samples, base.evaluation.seed),
        judge=judge,
        eval_judge=eval_judge,
        accelerator=make_accelerator(base.accelerate),
        batch_size=eval_batch_size(base),
        seed=base.evaluation.seed,
        progress=progress,
    )
    which = "asr_eval" if matrix["asr_eval"] is not None else "asr"
    result = {
        "seed": seed_index,
        "samples": samples,
        "attackers": [a for a, _ in attackers],
        "defenders": [d for d, _ in defenders],
        "judge": (eval_judge or judge).name,
        "asr": matrix[which],
    }
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
