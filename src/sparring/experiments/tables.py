"""The experiment's tables: per arm, mean and spread over seeds of every figure, the common
attack set's attackers x defenders matrix, and their Markdown and HTML renderings."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from sparring.evaluation.metrics import mean_std
from sparring.experiments.provenance import provenance_lines


def common_tables(common: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Over seeds: the attackers x defenders matrix (mean, std, n per cell), each defender's ASR
    over all attackers' attacks (column means) and each attacker's over all defenders (row
    means)."""
    if not common:
        return {"attackers": [], "defenders": [], "matrix": {}, "defender": {}, "attacker": {}}
    attackers, defenders = common[0]["attackers"], common[0]["defenders"]

    def cell(i, j):
        return mean_std([c["asr"][i][j] for c in common])

    def mean_of(values):
        xs = [v for v in values if v is not None]
        return sum(xs) / len(xs) if xs else None

    matrix = {a: {d: cell(i, j) for j, d in enumerate(defenders)} for i, a in enumerate(attackers)}
    by_defender = {
        d: mean_std([mean_of([row[j] for row in c["asr"]]) for c in common])
        for j, d in enumerate(defenders)
    }
    by_attacker = {
        a: mean_std([mean_of(c["asr"][i]) for c in common]) for i, a in enumerate(attackers)
    }
    return {
        "attackers": attackers,
        "defenders": defenders,
        "judge": common[0].get("judge"),
        "matrix": matrix,
        "defender": by_defender,
        "attacker": by_attacker,
    }


#: Table 1's columns from the last values of a run's ``metrics.jsonl`` (``entry["game"]``)
GAME_FIGURES = (
    ("Nash gap (pool)", "pool/gap"),
    ("best pool attacker", "pool/defender_exploit"),
    ("probe ASR", "probe/asr"),
    ("reopened", "probe/reopened"),
)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def aggregate(
    results: dict[str, list[dict[str, Any]]], common: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Mean, std and n over seeds of each table cell: Table 1 (defender), Table 2 (attacker) and,
    with ``common`` (:func:`common_attack_set` per seed), Table 3, the common attack set."""
    sets: list[str] = []
    targets: list[str] = []
    has_eval = False
    for entries in results.values():
        for e in entries:
            for s in e["eval"]["defender"]["sets"]:
                if s not in sets:
                    sets.append(s)
            for t in e["eval"]["attacker"]["targets"]:
                if t not in targets:
                    targets.append(t)
            has_eval = has_eval or e["eval"]["judges"]["eval_judge"] is not None
    judges = ["judge", "eval_judge"] if has_eval else ["judge"]
    defender_cols = [
        (f"ASR {s}" + (" (eval)" if j == "eval_judge" else ""), ("defender", "sets", s, j, "asr"))
        for j in judges
        for s in sets
    ]
    refusal_sets = [s for s in sets if s not in ("attacks", "seeds")] or sets
    defender_cols += [
        (f"refusal {s}", ("defender", "sets", s, "refusal_rate")) for s in refusal_sets
    ]
    over = judges[-1]  # the evaluation judge's when there is one
    defender_cols.append(
        (
            "over-refusal" + (" (eval)" if over == "eval_judge" else ""),
            ("defender", "over_refusal", over, "rate"),
        )
    )
    # conversations (game.turns or evaluation.turns > 1): each writer's episodes, judged by
    # the evaluation judge when there is one
    writers = list(
        dict.fromkeys(
            w for v in results.values() for e in v for w in e["eval"].get("dialogues") or {}
        )
    )
    defender_cols += [
        (f"ASR {w} dialogues" + (" (eval)" if has_eval else ""), ("dialogues", w, "asr"))
        for w in writers
    ]
    defender_cols.append(("KL defender", ("kl", "defender", "mean")))
    attacker_cols = [
        (
            f"ASR vs {t}" + (" (eval)" if j == "eval_judge" else ""),
            ("attacker", "targets", t, j, "asr"),
        )
        for j in judges
        for t in targets
    ]
    attacker_cols += [
        ("1-SelfBLEU", ("attacker", "diversity", "1-selfbleu")),
        ("1-cosine", ("attacker", "diversity", "1-cosine")),
        ("distinct-2", ("attacker", "diversity", "distinct-2")),
        ("KL attacker", ("kl", "attacker", "mean")),
    ]

    # the game's own figures at the end of training (opponent pools, round probe), when logged
    game_cols = [
        (label, ("game", key))
        for label, key in GAME_FIGURES
        if any(_get(e, "game", key) is not None for v in results.values() for e in v)
    ]

    def cells(cols, extra=()):
        rows = {}
        for arm, entries in results.items():
            row = {}
            for label, path in cols:
                row[label] = mean_std([_get(e["eval"], *path) for e in entries])
            for label, path in extra:
                row[label] = mean_std([_get(e, *path) for e in entries])
            rows[arm] = row
        return rows

    t1 = cells(defender_cols, [("exploitability", ("exploit", "asr_fresh")), *game_cols])
    t2 = cells(attacker_cols)
    t1_cols = [c for c, _ in defender_cols] + ["exploitability"] + [c for c, _ in game_cols]
    t2_cols = [c for c, _ in attacker_cols]
    shared = common_tables(common)
    if shared["defenders"]:
        t1_cols.append("ASR common attacks")
        for arm, row in t1.items():
            row["ASR common attacks"] = shared["defender"].get(arm, (None, None, 0))
        t2_cols.append("ASR vs every defender")
        for arm, row in t2.items():
            key = (
                arm if arm in shared["attacker"] else ("initial" if arm in ("sft", "rlhf") else arm)
            )
            row["ASR vs every defender"] = shared["attacker"].get(key, (None, None, 0))
    return {
        "defender": {"columns": t1_cols, "rows": t1},
        "attacker": {"columns": t2_cols, "rows": t2},
        "common": shared,
        "seeds": {a: len(v) for a, v in results.items()},
    }


def cell_text(cell: Sequence[Any], pct: bool) -> str:
    mean, std, n = cell
    if mean is None:
        return "-"
    scale = 100.0 if pct else 1.0
    digits = 2 if pct else 3
    return (
        f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
        if n > 1
        else f"{mean * scale:.{digits}f}"
    )


def _is_pct(col: str) -> bool:
    return (
        col.startswith(("ASR", "over-refusal", "refusal", "probe ASR")) or col == "exploitability"
    )


#: Figures of the arm comparison table, in order: (set kind, figure of compare_evals).
VERSUS_FIGURES = (
    "ASR eval judge",
    "ASR judge",
    "refusal rate",
    "refused then complied",
    "over-refusal eval judge",
    "over-refusal judge",
)


def versus_rows(versus: dict[str, Any]) -> list[list[str]]:
    """Rows of the arm comparison (arm, set, figure, reference, arm, difference [95% interval],
    Holm-adjusted p, seeds, smallest detectable difference) from
    :func:`sparring.experiments.versus.arm_comparisons`; the evaluation judge's figure
    stands for a judge's when there is one, and the primary figure is marked."""
    rows = []
    primary = versus.get("primary") or {}
    for arm, sets in versus.get("arms", {}).items():
        for s, figures in sets.items():
            shown = [f for f in VERSUS_FIGURES if figures.get(f)]
            if "ASR eval judge" in shown and "ASR judge" in shown:
                shown.remove("ASR judge")
            if "over-refusal eval judge" in shown and "over-refusal judge" in shown:
                shown.remove("over-refusal judge")
            for f in shown:
                e = figures[f]
                name = f + (
                    " (primary)" if (s, f) == (primary.get("set"), primary.get("figure")) else ""
                )
                rows.append(
                    [
                        arm,
                        s,
                        name,
                        f"{100 * e['start']:.1f}",
                        f"{100 * e['final']:.1f}",
                        _difference_text(e),
                        "-" if e.get("p_holm") is None else f"{e['p_holm']:.3f}",
                        str(e.get("seeds", "-")),
                        "-" if e.get("mde") is None else f"{100 * e['mde']:.1f}",
                    ]
                )
    return rows


def _difference_text(e: dict[str, Any]) -> str:
    if e.get("low") is None:  # one seed: no interval over seeds
        return f"{100 * e['diff']:+.1f} [one seed: no interval]"
    return f"{100 * e['diff']:+.1f} [{100 * e['low']:+.1f}, {100 * e['high']:+.1f}]"


def _versus_title(versus: dict[str, Any]) -> str:
    return (
        f"Table 4: each arm minus {versus['reference']}, in points: paired by prompt within "
        f"each of {versus['seeds']} seeds, 95% t-interval over seeds (covers between-seed "
        "variance), p Holm-adjusted across arms, MDE the smallest difference the seeds detect "
        "with 80% power"
    )


VERSUS_HEADER = [
    "arm",
    "set",
    "figure",
    "reference",
    "arm",
    "difference [95% interval]",
    "p (Holm)",
    "seeds",
    "MDE",
]


def to_markdown(table: dict[str, Any]) -> str:
    out = [
        "# Results",
        "",
        "Mean ± standard deviation over seeds; ASR, over-refusal and exploitability in %.",
        "",
    ]
    for title, key in (
        ("Table 1: defender (lower ASR is safer)", "defender"),
        ("Table 2: attacker (higher ASR and diversity are stronger)", "attacker"),
    ):
        cols = table[key]["columns"]
        out += [
            f"## {title}",
            "",
            "| arm | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for arm, row in table[key]["rows"].items():
            out.append(
                f"| {arm} | " + " | ".join(cell_text(row[c], _is_pct(c)) for c in cols) + " |"
            )
        out.append("")
    shared = table.get("common") or {}
    if shared.get("defenders"):
        out += [
            f"## Table 3: common attack set, ASR ({shared['judge']}) of each attacker (rows) "
            "against each defender (columns)",
            "",
            "| attacker \\ defender | " + " | ".join(shared["defenders"]) + " |",
            "|---" * (len(shared["defenders"]) + 1) + "|",
        ]
        for a in shared["attackers"]:
            cells = [cell_text(shared["matrix"][a][d], True) for d in shared["defenders"]]
            out.append(f"| {a} | " + " | ".join(cells) + " |")
        out.append("")
    versus = table.get("versus") or {}
    rows = versus_rows(versus)
    if rows:
        out += [
            f"## {_versus_title(versus)}",
            "",
            "| " + " | ".join(VERSUS_HEADER) + " |",
            "|---" * len(VERSUS_HEADER) + "|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    lines = provenance_lines(table.get("provenance"))
    if lines:
        out += ["## How this was made", "", *lines, ""]
    return "\n".join(out)


def to_html(table: dict[str, Any]) -> str:
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>sparring experiment</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em}td{text-align:right}</style></head><body>",
        "<h1>Results</h1><p>Mean ± standard deviation over seeds; ASR, over-refusal and exploitability "
        "in %.</p>",
    ]
    for title, key in (("Table 1: defender", "defender"), ("Table 2: attacker", "attacker")):
        cols = table[key]["columns"]
        parts.append(
            f"<h2>{escape(title)}</h2><table><tr><th>arm</th>"
            + "".join(f"<th>{escape(c)}</th>" for c in cols)
            + "</tr>"
        )
        for arm, row in table[key]["rows"].items():
            parts.append(
                f"<tr><th>{escape(arm)}</th>"
                + "".join(f"<td>{escape(cell_text(row[c], _is_pct(c)))}</td>" for c in cols)
                + "</tr>"
            )
        parts.append("</table>")
    shared = table.get("common") or {}
    if shared.get("defenders"):
        parts.append(
            f"<h2>Table 3: common attack set, ASR ({escape(str(shared['judge']))}) of each "
            "attacker (rows) against each defender (columns)</h2><table><tr><th>attacker</th>"
            + "".join(f"<th>{escape(d)}</th>" for d in shared["defenders"])
            + "</tr>"
        )
        for a in shared["attackers"]:
            parts.append(
                f"<tr><th>{escape(a)}</th>"
                + "".join(
                    f"<td>{escape(cell_text(shared['matrix'][a][d], True))}</td>"
                    for d in shared["defenders"]
                )
                + "</tr>"
            )
        parts.append("</table>")
    versus = table.get("versus") or {}
    rows = versus_rows(versus)
    if rows:
        parts.append(
            f"<h2>{escape(_versus_title(versus))}</h2><table><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in VERSUS_HEADER)
            + "</tr>"
        )
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    parts += [f"<p>{escape(line)}</p>" for line in provenance_lines(table.get("provenance"))]
    parts.append("</body></html>")
    return "\n".join(parts)
