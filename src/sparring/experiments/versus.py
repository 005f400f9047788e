"""Arms compared with a reference arm seed by seed: the experiments' ``versus`` table.

Every figure of every arm's evaluation (and its exploitability probes) minus the reference
arm's, paired within each seed on the prompts both answered, with seeds as the unit of
replication (:mod:`sparring.evaluation.stats`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the evaluation every arm of an experiment gets (``eval/<EVAL_NAME>.json``)
EVAL_NAME = "experiment"
#: the suffix of the row that measures a mixture-deploying arm's latest iterate
LATEST = "@latest"


def arm_comparisons(
    results: dict[str, list[dict[str, Any]]],
    *,
    reference: str = "gpo",
    primary: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Each arm minus ``reference`` on every figure of the evaluation (ASR by each judge,
    refusal rate, over-refusal), with seeds as the unit of replication
    (:mod:`sparring.evaluation.stats`).

    Within a seed the two arms are paired on the prompts both answered (every arm's
    evaluation draws the same prompts for a seed, with the same keyed sampling), giving one
    difference per seed; the interval is Student's t over those differences, so it covers the
    between-seed variance that pooling prompts across seeds ignores. Each figure's p-values
    are Holm-adjusted across the arms, ``mde`` says how large a difference the seeds could
    have detected (80% power), and ``primary`` ((set, figure)) is the figure named in advance
    to decide the experiment: by default exploitability where measured, else the first
    held-out set's ASR by the evaluation judge.

    Exploitability, where measured, is the set ``exploitability``: the fresh attacks of each
    arm's exploitability probes (:mod:`sparring.experiments.exploit`), paired by probe and by
    the seed prompt they rewrite (probe k draws the same seeds for every arm); its per-seed
    figure is the mean over probes (the tables' ``exploitability`` column is the maximum)."""
    from sparring.evaluation.compare import paired_means, read_eval_samples
    from sparring.evaluation.dialogues import DIALOGUE_SET
    from sparring.evaluation.stats import CONFIDENCE, POWER, holm, seed_level_difference
    from sparring.experiments.exploit import PROBE_EVAL, probe_dirs

    def rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
        run_dir = Path(entry["run_dir"])
        out = read_eval_samples(run_dir, entry.get("eval_name", EVAL_NAME))[1]
        if not entry.get("exploit"):
            return out
        for k, folder in enumerate(probe_dirs(run_dir)):
            probe = read_eval_samples(folder, PROBE_EVAL)[1]
            # fresh attacks: each arm's probe writes its own, paired by probe and by the seed
            # they rewrite (probe k draws the same seeds for every arm); a probe that learned
            # conversations is measured by its episodes
            fresh = f"{DIALOGUE_SET}learned"
            fresh = fresh if any(r["set"] == fresh for r in probe) else "attacks"
            out = out + [
                {**r, "set": "exploitability", "seed": f"probe-{k}|{r['seed']}"}
                for r in probe
                if r["set"] == fresh
            ]
        return out

    ref = {e["seed"]: rows(e) for e in results[reference]}
    arms: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, entries in results.items():
        if arm == reference:
            continue
        per: dict[str, dict[str, list[tuple[Any, dict[str, Any]]]]] = {}
        for e in entries:
            if e["seed"] not in ref:
                continue
            for set_name, figures in paired_means(ref[e["seed"]], rows(e)).items():
                for figure, m in figures.items():
                    if m is not None:
                        per.setdefault(set_name, {}).setdefault(figure, []).append((e["seed"], m))
        arms[arm] = {
            set_name: {
                figure: _seed_entry(ms, seed_level_difference) for figure, ms in figs.items()
            }
            for set_name, figs in per.items()
        }
    families = {(s, f) for sets in arms.values() for s, figs in sets.items() for f in figs}
    for s, f in families:
        members = [arms[a][s][f] for a in arms if f in arms[a].get(s, {})]
        for entry, p in zip(members, holm([m["p"] for m in members]), strict=True):
            entry["p_holm"] = p
    return {
        "reference": reference,
        "seeds": len(results[reference]),
        "design": "seed-level",
        "confidence": CONFIDENCE,
        "power": POWER,
        "primary": _primary(arms, primary),
        "arms": arms,
    }


def _seed_entry(per_seed: list[tuple[Any, dict[str, Any]]], difference) -> dict[str, Any]:
    """One figure of one arm: the reference's and the arm's means over seeds, the seed-level
    difference and its interval, each seed's difference, and the prompts paired in all."""
    entry: dict[str, Any] = {
        "start": sum(m["start"] for _, m in per_seed) / len(per_seed),
        "final": sum(m["final"] for _, m in per_seed) / len(per_seed),
    }
    entry.update(difference([m["final"] - m["start"] for _, m in per_seed]))
    entry["per_seed"] = {str(seed): m["final"] - m["start"] for seed, m in per_seed}
    entry["n_prompts"] = sum(len(m["keys"]) for _, m in per_seed)
    entry["unpaired"] = sum(m["unpaired"] for _, m in per_seed)
    return entry


def _primary(arms: dict[str, Any], primary: tuple[str, str] | None) -> dict[str, str] | None:
    """The (set, figure) named to decide the experiment: the one given, else exploitability,
    else the first held-out set, by the evaluation judge where there is one."""
    if primary is not None:
        return {"set": primary[0], "figure": primary[1]}
    sets = list(dict.fromkeys(s for a in arms.values() for s in a))
    held_out = [s for s in sets if s not in ("attacks", "seeds", "benign")]
    if not held_out:
        return None
    chosen = "exploitability" if "exploitability" in held_out else held_out[0]
    figures = {f for a in arms.values() for f in a.get(chosen, {})}
    figure = "ASR eval judge" if "ASR eval judge" in figures else "ASR judge"
    return {"set": chosen, "figure": figure}
