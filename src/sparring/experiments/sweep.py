"""``sparring sweep``: choose a run's settings on validation prompts, never on the figures they
are reported with.

A setting picked by looking at test figures (a KL coefficient, a benign share) makes those
figures optimistic: the choice has fitted the test set's noise. The sweep trains the config once
per point of a grid of ``--set`` values (and seed), evaluates every run on *validation* prompt
sets only (``NAME-validation`` parts; a ``-test`` set is refused), and chooses by a rule stated
before it runs:

1. admissible points: over-refusal on the validation benign prompts (by the evaluation judge, or
   with ``--guard judge`` the training judge) no higher than the untrained
   defender's plus ``tolerance`` (default: the smallest rise that many prompts can detect,
   :func:`~sparring.evaluation.stats.minimal_detectable_rise`; a rise smaller than that cannot be
   told from noise, so it cannot rule a point out);
2. among them, the lowest ``select`` figure (default the evaluation judge's ASR) averaged over
   the validation sets and seeds; the first point in grid order on a tie. When no point is
   admissible the one with the lowest over-refusal is chosen, and the result says so.

It writes ``OUT/sweep.json`` and ``OUT/sweep.md`` (every point's figures, the rule, the choice)
and prints the ``sparring train`` command of the chosen point, to be run and reported on the
test sets. A finished point is not trained again: rerunning continues where it stopped.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparring.config import load_config
from sparring.errors import ConfigError

FIGURES = {
    "ASR eval judge": ("eval_judge", "asr"),
    "ASR judge": ("judge", "asr"),
    # 1 - the refusal rate: where no judge measures harm (a small model's answers, where every
    # CPU judge agrees with a person only by chance) refusal is what can be measured; it shares
    # the refusal detector with a reward that pays for refusals, and sweep.md says so
    "non-refusal": (None, "refusal_rate"),
}
#: whose over-refusal guards the choice: the evaluation judge's helpfulness (default), or the
#: training judge's (where that is a refusal detector, the plain share of benign answers refused)
GUARDS = {"eval judge": "eval_judge", "judge": "judge"}


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``KEY=V1,V2,...`` items as (key, values), in the order given."""
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        vals = [v for v in values.split(",") if v]
        if not sep or not key or not vals:
            raise ConfigError(
                f"--grid {item!r}: expected KEY=V1,V2 (e.g. defender.rl.kl_coef=0.05,0.1)"
            )
        grid.append((key.strip(), vals))
    return grid


def grid_points(grid: Sequence[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination of the grid's values as ``--set`` overrides, the first key slowest."""
    keys = [k for k, _ in grid]
    return [[f"{k}={v}" for k, v in zip(keys, combo, strict=True)] for combo in
            itertools.product(*(vals for _, vals in grid))]  # fmt: skip


def check_validation(sets: Sequence[str], benign: str, reported: Sequence[str]) -> None:
    """Refuse a test split, or a set the config reports its results on."""
    for name in [*sets, benign]:
        if name.endswith("-test") or name in reported:
            raise ConfigError(
                f"sweep: {name!r} is a set results are reported on; choose on validation parts "
                "(e.g. harmbench-validation, benign-validation), never on the test figures"
            )


def choose(points: list[dict[str, Any]], baseline: float | None, tolerance: float | None) -> dict:
    """The rule of the module docstring on ``points`` (each ``{"figure", "over_refusal"}``):
    ``{"index", "admissible", "bar", "fallback"}``."""
    bar = None if baseline is None or tolerance is None else baseline + tolerance
    ok = [
        i
        for i, p in enumerate(points)
        if p["figure"] is not None and (bar is None or (p["over_refusal"] or 0.0) <= bar + 1e-12)
    ]
    if ok:
        best = min(ok, key=lambda i: (points[i]["figure"], i))
        return {"index": best, "admissible": ok, "bar": bar, "fallback": False}
    best = min(range(len(points)), key=lambda i: (points[i]["over_refusal"] or 0.0, i))
    return {"index": best, "admissible": [], "bar": bar, "fallback": True}


def _figures(
    ev: dict[str, Any], sets: Sequence[str], select: str, guard: str = "eval judge"
) -> tuple[dict, float | None]:
    from sparring.evaluation.evaluate import prompt_set_name

    judge_key, figure_key = FIGURES[select]
    per_set = {}
    for s in sets:
        entry = ev["defender"]["sets"].get(prompt_set_name(s)) or {}
        if judge_key is None:
            rate = entry.get(figure_key)
            per_set[s] = None if rate is None else 1.0 - rate
            continue
        block = entry.get(judge_key) or entry.get("judge") or {}
        per_set[s] = block.get(figure_key)
    over = ev["defender"].get("over_refusal") or {}
    block = over.get(GUARDS[guard]) or over.get("judge") or {}
    return per_set, block.get("rate")


def run_sweep(
    config: str | Path,
    *,
    grid: Sequence[tuple[str, list[str]]],
    validation: Sequence[str],
    benign: str,
    out: str | Path,
    select: str = "ASR eval judge",
    guard: str = "eval judge",
    seeds: int = 1,
    samples: int | None = None,
    tolerance: float | None = None,
    overrides: Sequence[str] = (),
    only_points: Sequence[int] | None = None,
    progress: bool = False,
    log=print,
) -> dict[str, Any] | None:
    """Train every grid point (and seed), evaluate on the validation sets, choose (module
    docstring); returns what ``sweep.json`` holds. With ``only_points`` just those points (by
    index, in grid order) are trained and evaluated and nothing is chosen (``None``): several
    processes share a sweep folder, and a run without it then reuses their work and chooses."""
    from sparring.evaluation.stats import minimal_detectable_rise
    from sparring.experiments.experiment import evaluation_of, run_arm

    if select not in FIGURES:
        raise ConfigError(f"--select {select!r}: expected one of {', '.join(FIGURES)}")
    if guard not in GUARDS:
        raise ConfigError(f"--guard {guard!r}: expected one of {', '.join(GUARDS)}")
    base = load_config(config, list(overrides))
    check_validation(validation, benign, base.evaluation.prompts)
    out = Path(out)
    points = grid_points(grid)

    def evaluated(point: list[str], seed: int, folder: Path, train: bool) -> dict[str, Any]:
        cfg = load_config(config, [*overrides, *point, f"seed={base.seed + seed}"])
        cfg.output_dir = str(folder)
        cfg.evaluation.at_start = cfg.evaluation.at_end = False  # no test figures: validation only
        log(f"[{' '.join(point) or 'untrained'} seed {seed}] -> {folder}")
        run_dir = run_arm(cfg, train, progress=progress)
        return evaluation_of(
            run_dir, "validation", prompts=list(validation), benign=benign, samples=samples,
            progress=progress,
        )  # fmt: skip

    if only_points is not None:
        if max(only_points) >= len(points):
            raise ConfigError(
                f"--only-points: the grid has {len(points)} points (0-{len(points) - 1})"
            )
        for i in only_points:
            for s in range(seeds):
                evaluated(points[i], s, out / f"point-{i}" / f"seed-{s}", True)
        return None
    rows = []
    for i, point in enumerate(points):
        per_seed = [
            evaluated(point, s, out / f"point-{i}" / f"seed-{s}", True) for s in range(seeds)
        ]
        figs = [_figures(ev, validation, select, guard) for ev in per_seed]
        per_set = {s: _mean([f[0][s] for f in figs]) for s in validation}
        rows.append({
            "point": point, "per_set": per_set,
            "figure": _mean(list(per_set.values())),
            "over_refusal": _mean([f[1] for f in figs]),
        })  # fmt: skip
    initial = evaluated([], 0, out / "untrained", False)
    initial_sets, baseline = _figures(initial, validation, select, guard)
    n_benign = (initial["defender"].get("over_refusal") or {}).get("n_prompts") or 0
    if tolerance is None:
        tolerance = minimal_detectable_rise(baseline, n_benign)
    decision = choose(rows, baseline, tolerance)
    chosen = rows[decision["index"]]["point"]
    result = {
        "schema": "sparring.sweep/1",
        "config": str(config),
        "overrides": list(overrides),
        "validation": list(validation),
        "benign": benign,
        "select": select,
        "guard": guard,
        "seeds": seeds,
        "untrained": {
            "per_set": initial_sets,
            "over_refusal": baseline,
        },
        "tolerance": tolerance,
        "points": rows,
        **decision,
        "chosen": chosen,
        "command": " ".join(
            ["sparring train", str(config), *(f"--set {o}" for o in [*overrides, *chosen])]
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "sweep.md").write_text(to_markdown(result), encoding="utf-8")
    return result


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(xs)) if xs else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def to_markdown(result: dict[str, Any]) -> str:
    sets = result["validation"]
    bar = result["bar"]
    rule = (
        f"admissible: over-refusal by the {result.get('guard', 'eval judge')} at most "
        f"{_pct(bar)}% (the untrained defender's "
        f"{_pct(result['untrained']['over_refusal'])}% plus {_pct(result['tolerance'])} points); "
        f"chosen: the lowest mean {result['select']} among them"
        if bar is not None
        else f"chosen: the lowest mean {result['select']}"
    )
    lines = [
        "# Sweep: settings chosen on validation prompts",
        "",
        f"Validation sets: {', '.join(sets)}; benign: {result['benign']}; "
        f"{result['seeds']} seed(s) per point; figures in %. Rule: {rule}.",
        "",
        "| point | " + " | ".join(sets) + f" | mean {result['select']} | over-refusal | |",
        "|---" * (len(sets) + 4) + "|",
        "| untrained | " + " | ".join(_pct(result["untrained"]["per_set"][s]) for s in sets)
        + f" | | {_pct(result['untrained']['over_refusal'])} | |",
    ]  # fmt: skip
    for i, p in enumerate(result["points"]):
        mark = (
            "chosen"
            if i == result["index"]
            else ("" if i in result["admissible"] else "over-refuses")
        )
        lines.append(
            f"| {' '.join(p['point'])} | " + " | ".join(_pct(p["per_set"][s]) for s in sets)
            + f" | {_pct(p['figure'])} | {_pct(p['over_refusal'])} | {mark} |"
        )  # fmt: skip
    if result["select"] == "non-refusal":
        lines += ["", "non-refusal is 1 - the refusal rate: it shares the refusal detector with a "
                  "reward that pays for refusals, and measures refusing, not harm."]  # fmt: skip
    if result["fallback"]:
        lines += ["", "No point was admissible: the one with the lowest over-refusal is chosen."]
    lines += ["", "Run and report it on the test sets:", "", f"    {result['command']}", ""]
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------------


def _sweep_command(args) -> int:
    from rich.console import Console

    from sparring.cli_args import index_list, show_progress

    console = Console()
    result = run_sweep(
        args.config,
        grid=parse_grid(args.grid),
        validation=[s for v in args.validation for s in v.split(",") if s],
        benign=args.benign,
        out=args.out,
        select=args.select,
        guard=args.guard,
        seeds=args.seeds,
        samples=args.samples,
        tolerance=args.tolerance,
        overrides=args.set,
        only_points=index_list(args.only_points, "--only-points"),
        progress=show_progress(args),
        log=lambda m: console.print(m, markup=False, highlight=False),
    )
    if result is None:
        console.print(f"points {args.only_points} done in {args.out}; run it again without "
                      "--only-points (with every point done) to choose")  # fmt: skip
        return 0
    console.print(to_markdown(result), markup=False, highlight=False)
    console.print(f"wrote {Path(args.out) / 'sweep.json'} and {Path(args.out) / 'sweep.md'}")
    return 0


def add_commands(sub) -> None:
    from sparring.cli_args import add_out, add_quiet, add_samples, with_examples

    p = sub.add_parser(
        "sweep",
        help="choose settings on validation prompts: train each point of a grid, evaluate on "
        "validation sets only, pick by a stated rule",
        description=__doc__.split("\n\n")[0],
        **with_examples(
            "sparring sweep configs/smollm2-harmbench.yaml --grid defender.rl.kl_coef=0.05,0.1,0.2 "
            "--validation harmbench-validation --benign benign-validation --out runs/sweep-kl"
        ),
    )
    p.add_argument("config", help="the run config (YAML)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="a setting and the values to try (repeatable: every combination)")  # fmt: skip
    p.add_argument("--validation", action="append", required=True, metavar="SET[,SET]",
                   help="harmful validation prompt sets (a -test set is refused)")  # fmt: skip
    p.add_argument("--benign", required=True, metavar="SET", help="benign validation prompts")
    p.add_argument("--select", default="ASR eval judge", choices=sorted(FIGURES),
                   help="the figure to minimise (default: ASR eval judge)")  # fmt: skip
    p.add_argument("--guard", default="eval judge", choices=sorted(GUARDS),
                   help="whose over-refusal rules points out: the evaluation judge's (default) or "
                   "the training judge's (a refusal detector's plain refusal rate)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=1, help="training seeds per point (default 1)")
    p.add_argument("--tolerance", type=float, metavar="RATE",
                   help="over-refusal rise allowed over the untrained defender's (default: the "
                   "smallest rise the benign prompts can detect)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the config at every point")  # fmt: skip
    add_samples(p, None, "prompts per validation set (default: the config's evaluation.samples)")
    p.add_argument("--only-points", metavar="I,J-K",
                   help="train and evaluate only these points (grid order, from 0) and choose "
                   "nothing, so several processes share the sweep folder")  # fmt: skip
    add_out(p, "sweep folder", required=True, metavar="DIR")
    add_quiet(p)
    p.set_defaults(func=_sweep_command)
