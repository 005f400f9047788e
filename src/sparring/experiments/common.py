"""What the experiments share: the common attack set (in each seed, the untrained attacker and
every arm's final attacker write attacks on the same seed prompts, and every arm's final
defender answers all of them: Table 3 of the results, who is robust to whose attacks), and the
check that a resumed experiment, arm, sweep point or probe continues with the config it began
with (:func:`same_base`), and the one place that decides whether such a run is reused, resumed
or trained (:func:`train_or_resume`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from sparring.config import RunConfig
from sparring.errors import ConfigError
from sparring.runs import flat_config


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

    runs = {
        arm: Path(e["run_dir"])
        for arm, entries in results.items()
        for e in entries
        if e["seed"] == seed_index
    }
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


def same_base(path: Path, base: RunConfig, what: str = "experiment") -> None:
    """Refuse to continue an experiment in ``path``'s folder with another base config than the
    one its finished arms were trained with (their figures and the new ones would not compare),
    naming the settings that differ; ``what="run"`` checks one run folder (``path`` its
    ``config.yaml``) the same way. A setting this version of Sparring has and the saved one
    lacks counts at its default (read through the current schema), so a newer version at its
    defaults continues an experiment."""
    if not path.is_file():
        return
    import yaml

    saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    with contextlib.suppress(ValueError):  # a setting this version no longer knows: as written
        saved = RunConfig.model_validate(saved).model_dump(mode="json")
    before = flat_config(saved)
    now = flat_config(base.model_dump(mode="json"))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
        more = ", ..." if len(changed) > 6 else ""
        if what == "run":
            raise ConfigError(
                f"{path.parent}: this run was started with another config ({shown}{more}); its "
                "steps and the new ones would not be one run: continue it with the config it "
                "was started with, or remove the folder to run it again"
            )
        raise ConfigError(
            f"{path.parent}: this experiment was run with another base config ({shown}{more}); "
            "continue it with the same config and --set overrides, or give a new --out"
        )


def train_or_resume(cfg: RunConfig, **game_kw: Any) -> Path:
    """Train the run ``cfg`` describes in its folder, continuing it where it stopped: a
    finished run (``summary.json``) is reused as it is, an interrupted one (checkpoints or
    metrics) resumes, each only when its saved config is ``cfg`` (:func:`same_base`; a config
    edited between two sessions of a sweep or an experiment is named, not mixed into the run).
    ``game_kw`` goes to :class:`~sparring.game.loop.Game` (``progress``, ``judge``,
    ``accelerator``). Returns the run folder."""
    from sparring.game.loop import Game

    run_dir = cfg.run_dir()
    same_base(run_dir / "config.yaml", cfg, what="run")
    if not (run_dir / "summary.json").is_file():
        resume = (run_dir / "checkpoints").exists() or (run_dir / "metrics.jsonl").exists()
        Game(cfg, resume=resume, **game_kw).run()
    return run_dir
