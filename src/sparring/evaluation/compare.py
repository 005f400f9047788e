"""Two evaluations compared prompt by prompt: each figure's difference with a paired bootstrap
95% interval over prompts (``sparring eval --compare``, ``sparring train``'s closing table)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparring.errors import SparringError
from sparring.evaluation import metrics as M
from sparring.evaluation import stats as S
from sparring.evaluation.evaluate import SCHEMA, read_evals
from sparring.evaluation.tables import fmt, reward_caption

# -- before/after: two evaluations compared prompt by prompt --------------------------------------

#: Figures compared by :func:`compare_evals`: (name, row key, set kind, value of one answer).
_FIGURES = (
    ("ASR judge", "p_safe", "harmful", lambda v: float(v < M.THRESHOLD)),
    ("ASR eval judge", "p_safe_eval", "harmful", lambda v: float(v < M.THRESHOLD)),
    ("refusal rate", "refused", "harmful", float),
    ("refused then complied", "refused_then_complied", "harmful", float),
    ("over-refusal judge", "helpful", "benign", lambda v: float(v < M.THRESHOLD)),
    ("over-refusal eval judge", "helpful_eval", "benign", lambda v: float(v < M.THRESHOLD)),
)


def read_eval_samples(run_dir: Path, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``eval/<name>.json`` and the rows of its samples file, or a SparringError saying which
    file is missing or malformed."""
    folder = Path(run_dir) / "eval"
    result = read_evals(run_dir).get(name)
    if result is None:
        known = ", ".join(sorted(read_evals(run_dir))) or "none"
        raise SparringError(
            f"{folder / (name + '.json')}: no evaluation named {name!r} with schema {SCHEMA} "
            f"(evaluations there: {known})"
        )
    path = folder / result.get("samples_file", f"{name}.samples.jsonl")
    if not path.is_file():
        raise SparringError(f"{path}: the samples of evaluation {name!r} are missing")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "set" not in row or "prompt" not in row:
            raise SparringError(f"{path}, line {i}: expected a JSON object with 'set' and 'prompt'")
        rows.append(row)
    return result, rows


def _pair_key(row: dict[str, Any]) -> str:
    """What pairs a row with its counterpart in another evaluation: the prompt, except for
    fresh attacks (the rows that carry the seed they rewrote), which differ between attackers
    and are paired by that seed."""
    return row["seed"] if "seed" in row else row["prompt"]


def _per_prompt(rows, key: str, value) -> dict[str, dict[str, float]]:
    """{set: {pair key: mean value of its scored answers}} for one figure. A conversation
    (rows with a ``turn``, one per answer, paired by their seed) counts once, by its outcome:
    the largest value over its turns, so its ASR is whether any answer was unsafe; a seed that
    opened several conversations gets the mean of their outcomes."""
    sums: dict[str, dict[str, dict[Any, list[float]]]] = {}
    for i, row in enumerate(rows):
        v = row.get(key)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        # one answer is its own unit; the answers of one conversation form one
        unit = ("episode", row.get("episode")) if "turn" in row else i
        by_key = sums.setdefault(row["set"], {}).setdefault(_pair_key(row), {})
        by_key.setdefault(unit, []).append(value(v))
    return {
        s: {k: float(np.mean([max(u) for u in units.values()])) for k, units in d.items()}
        for s, d in sums.items()
    }


def paired_means(
    start_rows: Sequence[dict[str, Any]], final_rows: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Each figure of each prompt set on the prompts both evaluations scored:
    ``{set: {figure: {"start", "final", "keys", "x", "y", "unpaired"} or None}}``, where ``x``
    and ``y`` are the per-prompt means (each prompt counts once, its answers averaged) in the
    order of ``keys``. Rows pair by (set, prompt), fresh attacks and conversations by their
    seed prompt (a conversation by its outcome, :func:`_per_prompt`). Harmful sets get the ASR
    by each judge and the refusal rate, the benign set the over-refusal by each judge; transfer
    targets are left out. A figure neither evaluation scored is absent; one with no prompt
    scored in both is None."""
    order = list(dict.fromkeys(r["set"] for r in (*final_rows, *start_rows)))
    out: dict[str, dict[str, Any]] = {s: {} for s in order if not s.startswith("target:")}
    for figure, key, kind, value in _FIGURES:
        before, after = _per_prompt(start_rows, key, value), _per_prompt(final_rows, key, value)
        for s in out:
            if (s == "benign") != (kind == "benign") or (s not in before and s not in after):
                continue
            b, a = before.get(s, {}), after.get(s, {})
            keys = [k for k in a if k in b]
            if not keys:
                out[s][figure] = None
                continue
            x, y = [b[k] for k in keys], [a[k] for k in keys]
            out[s][figure] = {
                "start": float(np.mean(x)),
                "final": float(np.mean(y)),
                "keys": keys,
                "x": x,
                "y": y,
                "unpaired": len(set(a) ^ set(b)),
            }
    return {s: figs for s, figs in out.items() if figs}


def compare_evals(
    start_rows: Sequence[dict[str, Any]],
    final_rows: Sequence[dict[str, Any]],
    *,
    resamples: int = S.BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Final minus start for each figure of each prompt set, with a paired bootstrap interval
    over prompts (:func:`paired_means`, :func:`stats.paired_bootstrap`): the before/after
    design of one run, whose interval covers prompts and sampled answers, not training seeds
    (:mod:`sparring.evaluation.stats`). Returns ``{set: {figure: {"start", "final", "diff",
    "low", "high", "resamples", "seed", "n_prompts", "unpaired"}}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for s, figures in paired_means(start_rows, final_rows).items():
        out[s] = {}
        for figure, m in figures.items():
            if m is None:
                out[s][figure] = None
                continue
            entry = {"start": m["start"], "final": m["final"]}
            entry.update(
                S.paired_bootstrap(m["x"], m["y"], m["keys"], resamples=resamples, seed=seed)
            )
            entry["unpaired"] = m["unpaired"]
            out[s][figure] = entry
    return out


def compare_table(
    comparison: dict[str, dict[str, Any]],
    start: str,
    final: str,
    reward: dict[str, str] | None = None,
):
    """Rich table of :func:`compare_evals`: each figure before, after, and the difference with
    its 95% interval. ``reward`` (an evaluation's ``shares_reward``) marks the figures that
    share a component with the training reward; within a prompt set the others come first."""
    from rich.markup import escape
    from rich.table import Table

    from sparring.evaluation.stats import minimal_detectable_rise

    reward = reward or {}
    t = Table(
        title=f"{final} minus {start}: one run, paired by prompt, 95% bootstrap interval over "
        "prompts (covers prompts and sampled answers, not training seeds)"
    )
    cols = (
        "prompt set",
        "figure",
        start,
        final,
        "difference (points)",
        "95% interval",
        "prompts",
        "detectable rise",
    )
    for col in cols:
        t.add_column(col, justify="left" if col in ("prompt set", "figure") else "right")
    for s, figures in comparison.items():
        for figure in sorted(figures, key=lambda f: f in reward):
            e = figures[figure]
            name = escape(f"{figure} [reward]") if figure in reward else figure
            if e is None:
                t.add_row(s, name, "-", "-", "-", "-", "0", "-")
                continue
            # over-refusal: the smallest rise from the start rate these prompts could show
            mde = (
                minimal_detectable_rise(e["start"], e["n_prompts"])
                if figure.startswith("over-refusal")
                else None
            )
            t.add_row(
                s,
                name,
                fmt(e["start"], True),
                fmt(e["final"], True),
                _signed_pct(e["diff"]),
                f"[{_signed_pct(e['low'])}, {_signed_pct(e['high'])}]",
                str(e["n_prompts"]),
                "-" if mde is None else _signed_pct(mde),
            )
    if reward:
        t.caption = reward_caption(reward)
    return t


def _signed_pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def add_quality(comparison, start_rows, final_rows, judge, a_better: str = "safe") -> None:
    """Add benign answer quality (:func:`sparring.evaluation.pairwise.benign_quality`) to a
    comparison, as the benign set's figure "preferred, pairwise": 50% is no change, and its
    interval is the bootstrap interval over prompts."""
    from sparring.evaluation.pairwise import benign_quality

    q = benign_quality(start_rows, final_rows, judge, a_better=a_better)
    if q is None:
        return
    p = q["p_trained_better"]
    entry = {"start": 0.5, "final": p, "diff": p - 0.5, "low": q["low"] - 0.5}
    entry.update(high=q["high"] - 0.5, n_prompts=q["n"], unpaired=0, quality=q)
    comparison.setdefault("benign", {})[f"preferred, pairwise ({q['judge']})"] = entry


def start_final_comparison(run_dir: Path, quality=None) -> dict[str, Any] | None:
    """Final minus start evaluation with paired bootstrap intervals, when the run evaluated both
    (also written to ``eval/start-vs-final.json``); with ``quality`` (``evaluation.quality``)
    also the benign answers' pairwise quality (:func:`add_quality`)."""
    evals = read_evals(run_dir)
    if "start" not in evals or "final" not in evals:
        return None
    start_rows = read_eval_samples(run_dir, "start")[1]
    final_rows = read_eval_samples(run_dir, "final")[1]
    comparison = compare_evals(start_rows, final_rows)
    if quality is not None:
        from sparring.judges import build_judge

        add_quality(
            comparison, start_rows, final_rows, build_judge(quality.judge), quality.a_better
        )
    (run_dir / "eval" / "start-vs-final.json").write_text(
        json.dumps(comparison, indent=2), encoding="utf-8"
    )
    return comparison
