"""``sparring experiment paper``: the paper's comparison (its Tables 1 and 2) with error bars.

Arms, each a set of explicit overrides applied to one base config (see :data:`ARMS`):

- ``sft``: no training; the initial models are evaluated.
- ``rlhf``: ``game.mode=rlhf``: the defender trains on the seed prompts.
- ``rlhf+div``: ``game.mode=attacker`` with diversity weights: an attacker trained against the
  fixed SFT defender.
- ``gpo``: ``game.mode=gpo`` with ``novelty.bleu_weight=0``, ``novelty.embed_weight=0``.
- ``gpo+div``: ``game.mode=gpo`` with the base config's diversity weights (5 / 1, as in the
  reference code, when both are 0 there).

``sparring experiment turns`` (a base config with ``game.turns`` > 1) sets ``gpo`` beside
``gpo-1turn``, the same game on single turns (``game.turns=1``); every arm is evaluated and
probed over the base's conversations (``evaluation.turns``; the probes learn dialogues).

``sparring experiment pools`` adds opponent pools (``game.pool``, :mod:`sparring.game.pool`;
the base config's pool settings, else the defaults, with the arm's opponent rule):

- ``gpo-pool`` / ``gpo-pool+div``: each step's opponent drawn uniformly from the other
  player's snapshots and its current weights (fictitious play);
- ``gpo-psro`` / ``gpo-psro+div``: drawn from the Nash mixture of the snapshots' empirical
  game (PSRO);
- ``gpo-fp`` and ``gpo-psro-full`` (on request, ``--arms``): the same rules over the whole
  population (``size: null``) instead of a window of recent snapshots; ``gpo-psro-full`` also
  deploys the defender's Nash mixture (``deploy: nash``).

In an experiment with pool arms, ``gpo`` and ``gpo+div`` keep a pool too, with ``opponent:
latest``: they train exactly as without one (the pool's payoffs are played on a forked RNG) and
log the same pool figures, so every arm's Nash gap is measured alike.

Equal compute: every arm keeps the base config's rounds and schedule, so the defender makes the
same number of updates in rlhf, gpo and gpo+div, and the attacker the same in rlhf+div, gpo and
gpo+div; each defender update answers as many prompts (with ``game.seed_fraction`` > 0 a GPO
defend batch holds the attacks plus seeds, and rlhf answers as many more seeds). Each arm runs once per seed (``seed = base seed + i``) in ``OUT/<arm>/seed-<i>/``, is
evaluated (``eval/experiment.json``) and, unless ``--no-exploit``, its exploitability measured.
A finished arm (``summary.json``) is not trained again, an interrupted one resumes, and an
existing evaluation is reused: rerunning the command continues where it stopped. Seeds run in
order, every arm of a seed before the next seed, so a stopped experiment holds whole seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparring.config import PoolConfig, RunConfig, dump_config, load_config
from sparring.errors import ConfigError
from sparring.evaluation.evaluate import evaluate_run
from sparring.experiments.common import common_attack_set, same_base, train_or_resume
from sparring.experiments.provenance import provenance
from sparring.experiments.tables import GAME_FIGURES, aggregate, to_html, to_markdown
from sparring.experiments.versus import EVAL_NAME, LATEST, arm_comparisons
from sparring.runs import latest_checkpoint, read_jsonl

DEFAULT_DIV = {"bleu_weight": 5.0, "embed_weight": 1.0}
ARM_NAMES = ["sft", "rlhf", "rlhf+div", "gpo", "gpo+div"]
POOL_ARMS = ["gpo-pool", "gpo-pool+div", "gpo-psro", "gpo-psro+div"]
#: pool arms as the theory has them: the whole population kept (no sliding window)
POPULATION_ARMS = ["gpo-fp", "gpo-psro-full"]
#: the arms each experiment runs by default
EXPERIMENTS = {
    "paper": ARM_NAMES,
    "pools": ["gpo", "gpo+div", *POOL_ARMS],
    "turns": ["sft", "gpo-1turn", "gpo"],
}
KNOWN_ARMS = [*ARM_NAMES, *POOL_ARMS, *POPULATION_ARMS, "gpo-1turn"]
#: arms whose attacker trains
ATTACKER_ARMS = ("rlhf+div", "gpo", "gpo+div", *POOL_ARMS, *POPULATION_ARMS, "gpo-1turn")


def arm_overrides(arm: str, base: RunConfig, *, pools: bool = False) -> dict[str, Any]:
    """The dotted-key overrides that turn the base config into one arm (``train`` is ours).
    ``pools``: the experiment has pool arms, so the gpo arms keep a measuring pool too."""
    div = {"bleu_weight": base.novelty.bleu_weight, "embed_weight": base.novelty.embed_weight}
    if div["bleu_weight"] == 0 and div["embed_weight"] == 0:
        div = dict(DEFAULT_DIV)
    with_div = {
        "novelty.bleu_weight": div["bleu_weight"],
        "novelty.embed_weight": div["embed_weight"],
    }
    no_div = {"novelty.bleu_weight": 0.0, "novelty.embed_weight": 0.0}
    pool = (base.game.pool or PoolConfig()).model_dump(mode="json")

    def with_pool(opponent: str, **more: Any) -> dict[str, Any]:
        return {"game.pool": {**pool, "opponent": opponent, **more}}

    measured = with_pool("latest") if pools else {}
    return {
        "sft": {"train": False, "game.mode": "gpo", **no_div},
        "rlhf": {"train": True, "game.mode": "rlhf", **no_div},
        "rlhf+div": {"train": True, "game.mode": "attacker", **with_div},
        "gpo": {"train": True, "game.mode": "gpo", **no_div, **measured},
        "gpo+div": {"train": True, "game.mode": "gpo", **with_div, **measured},
        "gpo-1turn": {"train": True, "game.mode": "gpo", **no_div, "game.turns": 1},
        "gpo-pool": {"train": True, "game.mode": "gpo", **no_div, **with_pool("uniform")},
        "gpo-pool+div": {"train": True, "game.mode": "gpo", **with_div, **with_pool("uniform")},
        "gpo-psro": {"train": True, "game.mode": "gpo", **no_div, **with_pool("nash")},
        "gpo-psro+div": {"train": True, "game.mode": "gpo", **with_div, **with_pool("nash")},
        # fictitious play over every past snapshot; PSRO over the whole population, handing
        # back the defender's Nash mixture
        "gpo-fp": {"train": True, "game.mode": "gpo", **no_div, **with_pool("uniform", size=None)},
        "gpo-psro-full": {
            "train": True,
            "game.mode": "gpo",
            **no_div,
            **with_pool("nash", size=None, deploy="nash"),
        },
    }[arm]


#: documented view of the overrides with the default diversity weights
ARMS = {
    "sft": "no training (initial models)",
    "rlhf": "game.mode=rlhf, novelty weights 0",
    "rlhf+div": "game.mode=attacker, novelty.bleu_weight/embed_weight from config or 5/1",
    "gpo": "game.mode=gpo, novelty weights 0",
    "gpo+div": "game.mode=gpo, novelty.bleu_weight/embed_weight from config or 5/1",
    "gpo-pool": "gpo with game.pool.opponent=uniform (fictitious play), novelty weights 0",
    "gpo-pool+div": "gpo-pool with the novelty weights of gpo+div",
    "gpo-psro": "gpo with game.pool.opponent=nash (PSRO), novelty weights 0",
    "gpo-psro+div": "gpo-psro with the novelty weights of gpo+div",
    "gpo-fp": "gpo-pool over every past snapshot (game.pool.size=null)",
    "gpo-psro-full": "gpo-psro over every past snapshot, deploying the Nash mixture (deploy=nash)",
    "gpo-1turn": "gpo on single turns (game.turns=1), evaluated over the base's conversations",
}


def arm_config(
    base: RunConfig, arm: str, seed_index: int, out: Path, *, pools: bool = False
) -> tuple[RunConfig, bool]:
    overrides = arm_overrides(arm, base, pools=pools)
    train = overrides.pop("train")
    data = base.model_dump(mode="json")
    data["name"] = f"{base.name}-{arm}-seed{seed_index}"
    data["seed"] = base.seed + seed_index
    data["output_dir"] = str(out / arm / f"seed-{seed_index}")
    # the experiment evaluates every arm itself, the same way
    overrides.update({"evaluation.at_start": False, "evaluation.at_end": False})
    if base.game.turns > 1:  # every arm measured over the base's conversations
        overrides["evaluation.turns"] = base.evaluation.turns or base.game.turns
    items = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return load_config(data=data, overrides=items), train


def evaluation_of(run_dir: Path, name: str = EVAL_NAME, **kw) -> dict[str, Any]:
    """``eval/<name>.json`` of a run when it exists (a rerun continues), else
    :func:`~sparring.evaluation.evaluate.evaluate_run` with ``kw`` under that name."""
    path = run_dir / "eval" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return evaluate_run(run_dir, name=name, **kw)


def run_arm(cfg: RunConfig, train: bool, *, progress: bool = False, judge=None) -> Path:
    """Train (or, for ``train=False``, only record) the run ``cfg`` describes in its folder;
    :func:`~sparring.experiments.common.train_or_resume` reuses a finished run and resumes an
    interrupted one, each only when its saved config is ``cfg``."""
    if train:
        return train_or_resume(cfg, progress=progress, judge=judge)
    run_dir = cfg.run_dir()
    same_base(run_dir / "config.yaml", cfg, what="run")
    if not (run_dir / "summary.json").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        (run_dir / "summary.json").write_text(
            json.dumps({"run_dir": str(run_dir), "mode": "sft", "steps": 0}), encoding="utf-8"
        )
    return run_dir


def run_experiment(
    config: str | Path,
    *,
    out: str | Path,
    seeds: int = 3,
    arms: Sequence[str] = ARM_NAMES,
    overrides: Sequence[str] = (),
    against: Sequence[str] = (),
    prompts: Sequence[str] = (),
    samples: int | None = None,
    exploit: bool = True,
    exploit_steps: int | None = None,
    exploit_probes: int = 3,
    primary: tuple[str, str] | None = None,
    only_seeds: Sequence[int] | None = None,
    progress: bool = False,
    judge=None,
    log=print,
) -> dict[str, Any] | None:
    """Train, evaluate and probe every arm for seeds ``0..seeds-1`` and write the tables.

    With ``only_seeds`` just those seed indices run and no table is written (``None`` is
    returned): several processes or machines can share one experiment folder, each on its own
    seeds, and a run without it then reuses their work and writes the tables."""
    from sparring.experiments.exploit import exploit as run_exploit

    base = load_config(config, list(overrides))
    prompts = list(prompts) or list(base.evaluation.prompts)
    samples = samples or base.evaluation.samples
    if "gpo-1turn" in arms and base.game.turns == 1:
        raise ConfigError(
            f"{config}: arm gpo-1turn is gpo on single turns beside the base's conversations; "
            "it needs a base config with game.turns > 1 (e.g. configs/arena-multiturn.yaml)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    same_base(out / "base_config.yaml", base)  # a resumed experiment never mixes two bases
    (out / "base_config.yaml").write_text(dump_config(base), encoding="utf-8")
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    pools = any(a in POOL_ARMS or a in POPULATION_ARMS for a in arms)
    common: list[dict[str, Any]] = []  # each seed's common attack set, in seed order
    for i in range(seeds) if only_seeds is None else only_seeds:
        for arm in arms:  # seed by seed: a stopped experiment holds whole, paired seeds
            cfg, train = arm_config(base, arm, i, out, pools=pools)
            log(f"[{arm} seed {i}] {'train' if train else 'no training'} -> {cfg.run_dir()}")
            run_dir = run_arm(cfg, train, progress=progress, judge=judge)
            kw = dict(against=against, prompts=prompts, samples=samples, judge=judge)
            kw.update(answers=base.evaluation.answers, progress=progress)
            entry = {"seed": i, "run_dir": str(run_dir), "eval": evaluation_of(run_dir, **kw)}
            entry.update(exploit=None, game=game_figures(run_dir))
            if train and cfg.game.pool is not None and cfg.game.pool.deploy == "nash":
                # the mixture is what the arm deploys; its latest iterate is measured beside it
                step = latest_checkpoint(run_dir)[0]  # the last step's checkpoint
                name = f"{EVAL_NAME}-latest"
                ev = evaluation_of(run_dir, name, checkpoint=f"step-{step}", **kw)
                results.setdefault(f"{arm}{LATEST}", []).append(
                    {**entry, "eval": ev, "eval_name": name}
                )
            if exploit:
                ex_path = run_dir / "eval" / "exploit.json"
                entry["exploit"] = (
                    json.loads(ex_path.read_text(encoding="utf-8"))
                    if ex_path.is_file()
                    else run_exploit(
                        run_dir,
                        steps=exploit_steps,
                        probes=exploit_probes,
                        progress=progress,
                        judge=judge,
                        base=base,
                    )
                )
            results[arm].append(entry)
        # the seed's common attack set, by the process that holds its runs (processes sharing
        # the seeds share this work too; a rerun reads it back from common-seed-<i>.json)
        deployed = {a: v for a, v in results.items() if not a.endswith(LATEST)}
        one = common_attack_set(
            base, deployed, i, attacker_arms=ATTACKER_ARMS, out=out, samples=samples,
            judge=judge, progress=progress,
        )  # fmt: skip
        common.append(one)
    if only_seeds is not None:
        return None  # a share of the seeds: the run over all of them writes the tables
    table = aggregate(results, common)
    table["provenance"] = provenance(results)  # protocol, machine, compute per arm and seed
    if "gpo" in results and len(results) > 1:
        table["versus"] = arm_comparisons(results, reference="gpo", primary=primary)
    (out / "results.json").write_text(
        json.dumps(
            {
                "arms": ARMS,
                "table": table,
                "runs": {
                    a: [{"seed": e["seed"], "run_dir": e["run_dir"]} for e in v]
                    for a, v in results.items()
                },
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    (out / "results.md").write_text(to_markdown(table), encoding="utf-8")
    (out / "results.html").write_text(to_html(table), encoding="utf-8")
    return table


def game_figures(run_dir: Path) -> dict[str, float]:
    """The last logged value of each of the game's own figures (:data:`GAME_FIGURES`: the
    opponent pools' and the round probe's) in the run's ``metrics.jsonl``."""
    out: dict[str, float] = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        for _, key in GAME_FIGURES:
            v = row.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                out[key] = float(v)
    return out
