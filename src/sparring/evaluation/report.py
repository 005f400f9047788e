"""``sparring report``: one self-contained HTML page about a run.

``RUN_DIR/report/index.html`` embeds its figures as base64 PNGs (the same PNGs are also left in
``RUN_DIR/report/``), uses no scripts and no external resources, and opens offline. All text
from the run (attacks, answers, names) is HTML-escaped.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from sparring import runs
from sparring._files import read_json_object
from sparring.evaluation.crossplay import read_crossplay
from sparring.evaluation.evaluate import read_evals
from sparring.evaluation.plots import crossplay_heatmap, metric_plot, turns_plot
from sparring.evaluation.tables import fmt

PLOTS = [
    ("rewards.png", ["reward"], "reward per step (the learning player's)", "reward"),
    ("p_safe.png", ["p_safe"], "judge P(safe) of the defender's answers to attacks", "P(safe)"),
    ("asr.png", ["asr"], "attack success rate (P(safe) < 0.5) during training", "ASR"),
    ("kl.png", ["kl"], "KL to the initial model (the learning player)", "KL"),
    (
        "novelty.png",
        ["novelty/selfbleu", "novelty/cosine"],
        "attack novelty against the history (lower = more novel)",
        "similarity",
    ),
    ("helpful.png", ["benign/helpful"], "helpfulness on benign prompts", "helpful"),
    (
        "refusal.png",
        ["refusal/harmful", "refusal/benign"],
        "share of the defender's answers that refuse (garak's strings), harmful and benign",
        "refused",
    ),
]


def game_plots(metrics: list[dict[str, Any]]) -> list[tuple[str, list[str], str, str]]:
    """Figures of the game itself, one line per figure over all steps: the opponent pools'
    empirical game (``game.pool``) and the round probe's ASR per group (``evaluation.probe``)."""
    groups = sorted({k for r in metrics for k in r if k.startswith("probe/asr/")})
    return [
        (
            "pool.png",
            ["pool/value", "pool/gap", "pool/defender_exploit"],
            "opponent pools: Nash value of the snapshots' game, Nash gap of the newest pair, "
            "best snapshot attacker against the newest defender",
            "mean P(unsafe)",
        ),
        (
            "probe.png",
            ["probe/asr", *groups],
            "round probe: the defender's ASR on a fixed set, overall and per group (a group "
            "that falls and climbs again is a weakness reopened)",
            "ASR",
        ),
        ("reopened.png", ["probe/reopened"], "round probe: closed groups reopened so far", "count"),
    ]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:420px;white-space:pre-wrap;word-break:break-word}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0}
figcaption{font-size:.85em;color:#555}.note{color:#666;font-size:.9em}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]], text_cols: tuple[int, ...] = ()) -> str:
    out = ["<table><tr>", *(f"<th>{escape(str(h))}</th>" for h in header), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = "text" if i in text_cols else ("num" if isinstance(cell, int | float) else "")
            shown = fmt(cell) if not isinstance(cell, str) else cell
            out.append(f'<td class="{cls}">{escape(shown)}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def top_attacks(samples: list[dict[str, Any]], k: int = 10) -> tuple[list[dict], list[dict]]:
    """(most successful, most diverse) distinct attacks from samples.jsonl rows.

    Most successful: lowest P(safe). Most diverse: lowest novelty similarity to the history at
    the time (SelfBLEU + cosine), among attacks after the first batch (which has no history).
    """
    attacks = [s for s in samples if not s.get("benign") and s.get("attack") is not None]
    seen: set[str] = set()
    successful = []
    for s in sorted(attacks, key=lambda s: (_num(s.get("p_safe"), 1.0), s.get("step", 0))):
        if s["attack"] not in seen:
            seen.add(s["attack"])
            successful.append(s)
        if len(successful) == k:
            break
    first = min((s.get("step", 0) for s in attacks), default=0)
    seen = set()
    diverse = []
    later = [s for s in attacks if s.get("step", 0) > first]
    for s in sorted(
        later,
        key=lambda s: (
            _num(s.get("selfbleu"), 0.0) + _num(s.get("cosine"), 0.0),
            _num(s.get("p_safe"), 1.0),
        ),
    ):
        if s["attack"] not in seen:
            seen.add(s["attack"])
            diverse.append(s)
        if len(diverse) == k:
            break
    return successful, diverse


def _num(v: Any, default: float) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def _attack_rows(rows: list[dict]) -> list[list[Any]]:
    return [
        [
            r.get("step"),
            r.get("stage", ""),
            r.get("seed", ""),
            r["attack"],
            r.get("response", ""),
            r.get("p_safe"),
            _num(r.get("selfbleu"), 0.0),
            _num(r.get("cosine"), 0.0),
        ]
        for r in rows
    ]


def _eval_section(name: str, ev: dict[str, Any]) -> str:
    j, e = ev["judges"]["judge"], ev["judges"]["eval_judge"]
    header = ["prompt set", "n", f"ASR ({j})", "P(safe)"] + (
        [f"ASR eval ({e})", "P(safe) eval", "gap"] if e else []
    )
    rows = []
    header.append("refused")
    for key, s in ev["defender"]["sets"].items():
        row = [key, s["n"], s["judge"]["asr"], s["judge"]["p_safe"]]
        if e:
            row += [s["eval_judge"]["asr"], s["eval_judge"]["p_safe"], s.get("asr_gap")]
        rows.append([*row, s.get("refusal_rate")])
    parts = [
        f"<h3>{escape(name)}: defender {escape(ev['players']['defender']['label'])}, attacker "
        f"{escape(ev['players']['attacker']['label'])}</h3>",
        _table(header, rows),
    ]
    agreement = ev.get("agreement") or {}
    if agreement:
        pairs = ("judge~eval_judge", "judge~refusal", "eval_judge~refusal")
        arows = []
        for key, a in agreement.items():
            cells = []
            for pair in pairs:
                k = a.get(pair)
                cells += [k.get("kappa") if k else None, k.get("agreement") if k else None]
            arows.append([key, *cells])
        head = ["agreement on unsafe"]
        for pair in pairs:
            head += [f"kappa {pair}", f"agree {pair}"]
        parts.append(_table(head, arows))
    o = ev["defender"].get("over_refusal")
    if o:
        parts.append(
            _table(
                ["benign prompts", "n", "over-refusal (judge)", "over-refusal (eval judge)"],
                [
                    [
                        "benign",
                        o["n"],
                        (o.get("judge") or {}).get("rate"),
                        (o.get("eval_judge") or {}).get("rate"),
                    ]
                ],
            )
        )
    trows = [
        [k, t["judge"]["asr"], (t.get("eval_judge") or {}).get("asr")]
        for k, t in ev["attacker"]["targets"].items()
    ]
    parts.append(_table(["attacker vs target", "ASR (judge)", "ASR (eval judge)"], trows))
    if ev.get("dialogues"):
        parts.append(_dialogue_table(ev["dialogues"]))
    d = ev["attacker"]["diversity"]
    parts.append(
        _table(
            [
                "attack diversity",
                "1-SelfBLEU",
                "1-cosine",
                "distinct-1",
                "distinct-2",
                "unique / n",
                "KL attacker",
                "KL defender",
            ],
            [
                [
                    "attacks",
                    d.get("1-selfbleu"),
                    d.get("1-cosine"),
                    d.get("distinct-1"),
                    d.get("distinct-2"),
                    f"{d.get('unique')} / {d.get('n')}",
                    ev["kl"]["attacker"]["mean"],
                    ev["kl"]["defender"]["mean"],
                ]
            ],
        )
    )
    return "".join(parts)


def _dialogue_table(dialogues: dict[str, Any]) -> str:
    """Multi-turn attacks: attack success by each turn, overall with its 95% bounds over
    episodes, and the mean turns to success, per writer."""
    turns = max(len(d["asr_by_turn"]) for d in dialogues.values())
    head = ["multi-turn attacker", "episodes", "ASR", "95% bounds", "turns to success"]
    head += [f"by turn {t + 1}" for t in range(turns)]
    rows = []
    for name, d in dialogues.items():
        low, high = d["asr_bounds"]
        bounds = f"[{fmt(low)}, {fmt(high)}]" if low is not None else None
        rows.append(
            [name, d["episodes"], d["asr"], bounds, d["turns_to_success"], *d["asr_by_turn"]]
        )
    return _table(head, rows)


def build_report(run_dir: str | Path, *, top_k: int = 10) -> Path:
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    metrics = runs.read_jsonl(run_dir / "metrics.jsonl")
    samples = runs.read_jsonl(run_dir / "samples.jsonl")
    summary = read_json_object(run_dir / "summary.json")
    config_text = (
        (run_dir / "config.yaml").read_text(encoding="utf-8")
        if (run_dir / "config.yaml").is_file()
        else ""
    )
    figs = []
    for fname, keys, title, ylabel in PLOTS:
        p = metric_plot(metrics, keys, out / fname, title=title, ylabel=ylabel)
        if p is not None:
            figs.append((p, title))
    for fname, keys, title, ylabel in game_plots(metrics):
        p = metric_plot(metrics, keys, out / fname, title=title, ylabel=ylabel, by_stage=False)
        if p is not None:
            figs.append((p, title))
    cross = read_crossplay(run_dir)
    if cross is not None:
        figs.append(
            (
                crossplay_heatmap(cross, out / "crossplay.png"),
                "cross-play: attack success, attacker "
                "checkpoint (rows) vs defender checkpoint (columns)",
            )
        )
        if cross.get("asr_eval") is not None:
            figs.append(
                (
                    crossplay_heatmap(cross, out / "crossplay_eval.png", key="asr_eval"),
                    "cross-play by the evaluation judge",
                )
            )
    evals = read_evals(run_dir)
    for name, ev in evals.items():
        p = turns_plot(ev, out / f"turns-{name}.png")
        if p is not None:
            figs.append((p, f"{name}: attack success by turn, multi-turn and single-turn"))
    exploit = read_json_object(run_dir / "eval" / "exploit.json")
    title = f"sparring run: {run_dir.name}"
    html = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
    ]
    if summary:
        html.append("<h2>Summary</h2>")
        html.append(
            _table(
                ["figure", "value"],
                [[k, v if isinstance(v, int | float) else str(v)] for k, v in summary.items()],
            )
        )
    html.append("<h2>Training curves</h2>")
    if figs:
        html.append('<div class="figs">')
        for p, cap in figs:
            html.append(f"<figure>{_img(p)}<figcaption>{escape(cap)}</figcaption></figure>")
        html.append("</div>")
    else:
        html.append('<p class="note">metrics.jsonl holds no steps yet.</p>')
    html.append("<h2>Evaluation</h2>")
    if evals:
        for name, ev in evals.items():
            html.append(_eval_section(name, ev))
    else:
        html.append(
            f'<p class="note">no evaluation yet: run <code>sparring eval {escape(str(run_dir))}</code>.</p>'
        )
    if exploit:
        html.append("<h3>Exploitability</h3>")
        html.append(
            _table(
                ["fresh attackers vs frozen final defender", "value"],
                [
                    ["probes (each on its own seed)", exploit.get("n_probes", 1)],
                    ["steps per probe", exploit.get("steps")],
                    ["trained against", exploit.get("trained_against")],
                    [
                        "ASR on fresh attacks, strongest probe ("
                        + str(exploit.get("asr_fresh_judge"))
                        + ")",
                        exploit.get("asr_fresh"),
                    ],
                    ["ASR on fresh attacks, mean over probes", exploit.get("asr_fresh_mean")],
                    ["standard deviation over probes", exploit.get("asr_fresh_sd")],
                    ["strongest probe: ASR, mean of last steps", exploit.get("asr_last_mean")],
                    ["strongest probe: ASR, final step", exploit.get("asr_final")],
                ],
            )
        )
    if cross is not None:
        html.append("<h3>Cross-play matrix (attack success)</h3>")
        html.append(
            _table(
                ["attacker \\ defender", *cross["defenders"]],
                [[a, *row] for a, row in zip(cross["attackers"], cross["asr"], strict=True)],
            )
        )
    successful, diverse = top_attacks(samples, top_k)
    header = [
        "step",
        "stage",
        "seed",
        "attack",
        "defender's answer",
        "P(safe)",
        "SelfBLEU",
        "cosine",
    ]
    html.append("<h2>Most successful attacks</h2>")
    html.append(
        _table(header, _attack_rows(successful), text_cols=(2, 3, 4))
        if successful
        else '<p class="note">no attacks logged.</p>'
    )
    html.append("<h2>Most novel attacks</h2>")
    html.append(
        '<p class="note">lowest similarity (SelfBLEU + cosine) to the attacks before them.</p>'
    )
    html.append(
        _table(header, _attack_rows(diverse), text_cols=(2, 3, 4))
        if diverse
        else '<p class="note">no attacks after the first batch.</p>'
    )
    if config_text:
        html.append(f"<h2>Config</h2><pre>{escape(config_text)}</pre>")
    html.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(html), encoding="utf-8")
    return index
