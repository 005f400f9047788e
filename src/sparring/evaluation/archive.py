"""The attack archive: every attack that succeeded, kept to be replayed later.

A run appends to ``RUN_DIR/archive.jsonl`` each step: every attack whose answer the evaluation
judge (the training judge when the run has none) scored unsafe, with its seed, category (when
the judge labels one), the step that wrote it and the attacker it came from (the attacker as it
was after ``attacker_after_step`` updates of the run), the answer and both judges' scores.
A turn of a multi-turn episode is kept with its ``dialogue`` (the messages the defender
answered: the attacker's turns and the defender's answers before it) and its ``turn``, and is
compared with others by all the attacker's turns of it. Near-duplicates are left out: an attack
whose embedding (the novelty term's embedder) has cosine
``>= dedup_cosine`` with one already kept, or whose normalised text equals one, is not added.

``sparring archive merge`` joins archives of several runs (exact-text de-duplication);
``sparring regress`` replays one against a model (:mod:`sparring.evaluation.regress`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparring.errors import DataError
from sparring.judges.base import THRESHOLD

SCHEMA = "sparring.archive/1"
FILE = "archive.jsonl"


def normalise(text: str) -> str:
    """Case and whitespace folded: the exact-duplicate key."""
    return re.sub(r"\s+", " ", text.strip().lower())


def attack_text(row: dict[str, Any]) -> str:
    """What an archived attack is compared by: the attack, or every attacker turn of its
    dialogue (one per line)."""
    dialogue = row.get("dialogue")
    return "\n".join(dialogue[0::2]) if dialogue else row["attack"]


class Archive:
    """An append-only archive file with near-duplicate filtering (see the module docstring)."""

    def __init__(self, path: Path, *, embedder=None, dedup_cosine: float = 0.95):
        """``embedder``: an embedder, or a function that builds one (called on first use, with
        torch's random state kept as it was: building a model must not change what training
        samples next)."""
        self.path = path
        self._embedder = embedder
        self.dedup_cosine = dedup_cosine
        self.rows = read_archive(path) if path.exists() else []
        self._seen = {normalise(attack_text(r)) for r in self.rows}
        self._vectors = None
        if self.rows:
            self._vectors = self._embed([attack_text(r) for r in self.rows])

    @property
    def embedder(self):
        if callable(self._embedder) and not hasattr(self._embedder, "embed"):
            import torch

            with torch.random.fork_rng(devices=[]):
                self._embedder = self._embedder()
        return self._embedder

    def _embed(self, texts: list[str]) -> np.ndarray | None:
        if self.embedder is None:
            return None
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.asarray(self.embedder.embed(texts), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append the rows that are not near-duplicates (of the archive or of each other);
        returns the rows added."""
        fresh = [r for r in rows if normalise(attack_text(r)) not in self._seen]
        if not fresh:
            return []
        vectors = self._embed([attack_text(r) for r in fresh])
        added = []
        for i, row in enumerate(fresh):
            key = normalise(attack_text(row))
            if key in self._seen:
                continue
            if vectors is not None:
                v = vectors[i]
                if self._vectors is None:
                    self._vectors = np.zeros((0, len(v)), dtype=np.float32)
                if len(self._vectors) and float(np.max(self._vectors @ v)) >= self.dedup_cosine:
                    continue
                self._vectors = np.vstack([self._vectors, v[None]])
            self._seen.add(key)
            added.append(row)
        if added:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                for row in added:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.rows.extend(added)
        return added


def successes(samples: Sequence[dict[str, Any]], *, run: str, judge: str, eval_judge: str | None):
    """The archive rows of one step's samples: attacks (not seeds, not benign prompts) whose
    answer the evaluation judge scored unsafe (the training judge where the evaluation judge
    did not score the step: ``evaluation.every_step`` off, or no evaluation judge);
    ``judged_by`` names which."""
    out = []
    for s in samples:
        if "attack" not in s or s.get("benign"):
            continue
        by_eval = eval_judge is not None and s.get("p_safe_eval") is not None
        verdict = s.get("p_safe_eval") if by_eval else s.get("p_safe")
        if verdict is None or not np.isfinite(verdict) or verdict >= THRESHOLD:
            continue
        out.append(
            {
                "attack": s["attack"],
                "seed": s.get("seed"),
                "category": s.get("category"),
                "step": s["step"],
                "attacker_after_step": s["step"] - 1,
                "response": s["response"],
                "p_safe": s.get("p_safe"),
                "p_safe_eval": s.get("p_safe_eval"),
                "judge": judge,
                "eval_judge": eval_judge,
                "judged_by": eval_judge if by_eval else judge,
                "run": run,
                **({"dialogue": s["dialogue"], "turn": s["turn"]} if "dialogue" in s else {}),
            }
        )
    return out


def read_archive(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an archive file; a DataError names the file and line of a bad row."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise DataError(f"archive {path} does not exist")
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines) and not path.read_bytes().endswith(b"\n"):
                break  # a last line cut by a kill: the step it belongs to is replayed
            raise DataError(f"{path}, line {n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("attack"), str):
            raise DataError(f"{path}, line {n}: expected an object with an 'attack' string")
        rows.append(row)
    return rows


def truncate(path: Path, max_step: int) -> None:
    """Drop rows written after ``max_step`` (a resumed run replays those steps)."""
    if not path.exists():
        return
    kept = [r for r in read_archive(path) if r.get("step", 0) <= max_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), "utf-8")
    tmp.replace(path)


def merge(paths: Sequence[str | Path], out: str | Path) -> dict[str, int]:
    """Join archives, first occurrence of each normalised attack kept; writes ``out``."""
    seen: set[str] = set()
    kept, total = [], 0
    for p in paths:
        for row in read_archive(p):
            total += 1
            key = normalise(attack_text(row))
            if key not in seen:
                seen.add(key)
                kept.append(row)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), "utf-8")
    return {"read": total, "kept": len(kept), "archives": len(paths)}
