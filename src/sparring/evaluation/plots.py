"""Matplotlib figures of a run (Agg backend: no display needed), saved as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _series(rows: Sequence[dict[str, Any]], key: str, stage: str | None = None):
    xs, ys = [], []
    for r in rows:
        if stage is not None and r.get("stage") != stage:
            continue
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def metric_plot(
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    path: Path,
    *,
    title: str,
    ylabel: str = "",
    by_stage: bool = True,
) -> Path | None:
    """One line per (key, stage) over steps; None when no key has any value."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    drawn = 0
    stages = ("defend", "attack") if by_stage else (None,)
    for key in keys:
        for stage in stages:
            xs, ys = _series(rows, key, stage)
            if xs:
                label = f"{key} ({stage})" if stage else key
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
                drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    return _finish(plt, fig, ax, path, title, ylabel)


def _finish(plt, fig, ax, path: Path, title: str, ylabel: str) -> Path:
    """Title, label, grid and legend a line plot, save it as ``path`` and close it."""
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def crossplay_heatmap(result: dict[str, Any], path: Path, key: str = "asr") -> Path:
    """Attack success of each attacker (rows) against each defender (columns)."""
    plt = _plt()
    m = np.array([[np.nan if v is None else v for v in row] for row in result[key]], dtype=float)
    n_a, n_d = m.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * max(n_d, 3), 1.0 + 0.5 * max(n_a, 3)), dpi=100)
    im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_d), result["defenders"], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_a), result["attackers"], fontsize=8)
    ax.set_xlabel("defender checkpoint")
    ax.set_ylabel("attacker checkpoint")
    which = result["judges"]["eval_judge"] if key == "asr_eval" else result["judges"]["judge"]
    ax.set_title(f"attack success ({which})", fontsize=10)
    for i in range(n_a):
        for j in range(n_d):
            if np.isfinite(m[i, j]):
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] < 0.6 else "black",
                )
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def turns_plot(ev: dict[str, Any], path: Path) -> Path | None:
    """Attack success by turn (the share of episodes that found an unsafe answer by each turn)
    of each multi-turn writer of an evaluation, beside the single-turn attacks' rate; None
    when the evaluation played no dialogues."""
    dialogues = ev.get("dialogues")
    if not dialogues:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for name, d in dialogues.items():
        ys = d["asr_by_turn"]
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=f"{name} ({d['episodes']} episodes)")
    attacks = ev["defender"]["sets"].get("attacks") or {}
    single = (attacks.get("eval_judge") or attacks.get("judge") or {}).get("asr")
    if single is not None:
        ax.axhline(single, color="grey", linestyle="--", label="single-turn attacks")
    ax.set_xlabel("turn")
    ax.set_ylim(0, 1)
    title = f"{ev.get('name', '')}: multi-turn attacks"
    return _finish(plt, fig, ax, path, title, "attack success by this turn")
