"""The evaluation as rich tables: the defender's sets, the attacker's targets and diversity, KL,
and the judges' agreement."""

from __future__ import annotations

from typing import Any


def fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{100 * x:.1f}%" if pct else f"{x:.3f}"
    return str(x)


def reward_caption(reward: dict[str, str]) -> str:
    """The caption of a table whose ``[reward]`` columns or rows share the training reward."""
    from rich.markup import escape

    return escape("[reward] shares a component with the training reward: ") + "; ".join(
        f"{k}: {v}" for k, v in reward.items()
    )


def over_refusal_text(figure: dict[str, Any] | None) -> str:
    """An over-refusal rate with the smallest rise its prompts could show beside it."""
    if not figure:
        return "-"
    mde = figure.get("mde_rise")
    return fmt(figure.get("rate"), True) + ("" if mde is None else f" (+{100 * mde:.1f})")


def eval_tables(result: dict[str, Any]):
    """Rich tables of one eval result (defender sets, attacker targets and diversity, KL)."""
    from rich.markup import escape
    from rich.table import Table

    has_eval = result["judges"]["eval_judge"] is not None
    reward = result.get("shares_reward") or {}

    def mark(figure: str, header: str) -> str:
        """A column that shares a component with the training reward says so."""
        return escape(f"{header} [reward]") if figure in reward else header

    limits = result.get("limits") or {}
    t = Table(
        title=f"defender ({result['players']['defender']['label']}): attack success by prompt set"
        + (f", answers up to {limits['max_new_tokens']} tokens" if limits else "")
    )
    t.add_column("prompt set")
    t.add_column("n", justify="right")
    t.add_column(mark("ASR judge", f"ASR {result['judges']['judge']}"), justify="right")
    t.add_column("P(safe)", justify="right")
    if has_eval:
        t.add_column(
            mark(
                "ASR eval judge", f"ASR {result['judges']['eval_judge']} (eval, on the behaviour)"
            ),
            justify="right",
        )
        t.add_column("P(safe) eval", justify="right")
    t.add_column(mark("refusal rate", "refused"), justify="right")
    t.add_column("refused, then complied", justify="right")
    t.add_column("prompts cut", justify="right")
    if reward:
        t.caption = reward_caption(reward)
    for key, e in result["defender"]["sets"].items():
        cells = [key, str(e["n"]), fmt(e["judge"]["asr"], True), fmt(e["judge"]["p_safe"])]
        if has_eval:
            cells += [fmt(e["eval_judge"]["asr"], True), fmt(e["eval_judge"]["p_safe"])]
        t.add_row(
            *cells,
            fmt(e.get("refusal_rate"), True),
            fmt(e.get("refused_then_complied"), True),
            fmt(e.get("prompts_cut")),
        )
    o = result["defender"].get("over_refusal")
    if o:
        cells = [
            f"benign: over-refusal ({o.get('n_prompts', o['n'])} prompts; detectable rise)",
            str(o["n"]),
            over_refusal_text(o.get("judge")),
            "-",
        ]
        if has_eval:
            cells += [over_refusal_text(o.get("eval_judge")), "-"]
        t.add_row(*cells, "-", "-", "-")
    a = Table(title=f"attacker ({result['players']['attacker']['label']}): success against targets")
    a.add_column("target")
    a.add_column("ASR judge", justify="right")
    if has_eval:
        a.add_column("ASR eval judge", justify="right")
    a.add_column("refused", justify="right")
    for key, e in result["attacker"]["targets"].items():
        a.add_row(
            key,
            fmt(e["judge"]["asr"], True),
            *([fmt(e["eval_judge"]["asr"], True)] if has_eval else []),
            fmt(e.get("refusal_rate"), True),
        )
    d = Table(title="attacker diversity and distance moved")
    d.add_column("figure")
    d.add_column("value", justify="right")
    div = result["attacker"]["diversity"]
    for key in ("1-selfbleu", "1-cosine", "distinct-1", "distinct-2", "unique"):
        d.add_row(key, fmt(div.get(key)))
    for role in ("attacker", "defender"):
        d.add_row(f"KL {role} to initial (per sequence)", fmt(result["kl"][role]["mean"]))
    tables = [t, a, d]
    if result.get("agreement"):
        tables.insert(1, agreement_table(result))
    return tables


def agreement_table(result: dict[str, Any]):
    """Cohen's kappa, raw agreement and n of each pair of raters on each harmful prompt set."""
    from rich.table import Table

    pairs = ["judge~refusal"]
    if result["judges"]["eval_judge"] is not None:
        pairs = ["judge~eval_judge", "judge~refusal", "eval_judge~refusal"]
    t = Table(
        title="agreement on 'unsafe': Cohen's kappa / raw agreement / n",
        caption="refusal: unsafe = not refused; kappa - = undefined (one label throughout)",
    )
    t.add_column("prompt set")
    for pair in pairs:
        t.add_column(pair, justify="right")
    for key, entry in result["agreement"].items():
        cells = []
        for pair in pairs:
            g = entry.get(pair)
            cells.append(
                "-" if g is None else f"{fmt(g['kappa'])} / {fmt(g['agreement'], True)} / {g['n']}"
            )
        t.add_row(key, *cells)
    return t
