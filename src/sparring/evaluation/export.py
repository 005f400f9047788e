"""``sparring export-attacks``: the attacks a run discovered, as a dataset others can replay.

Records come from ``samples.jsonl`` (attack rows only; benign rows are left out) and, with
``--include-eval``, from ``eval/*.samples.jsonl`` (fresh attacks of evaluations). Each record::

    {"attack", "seed", "response", "p_safe", "success", "step", "stage", "source",
     "attack_raw", "selfbleu", "cosine", "messages", "turn", "judge": {extra scores and labels}}

``messages`` is the exchange in the chat format other tools read (``[{"role": "user", ...},
{"role": "assistant", ...}]``): the whole conversation up to the answer for a multi-turn
episode's turn (``turn`` 1, 2, ...), the attack and its answer otherwise (``turn`` null).

``success = 1 - p_safe`` (the attacker's judge reward before novelty); ``--min-success X``
keeps records with success >= X. Written as jsonl, and as a Hugging Face dataset
(``save_to_disk``) when the ``datasets`` package is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparring import runs
from sparring.players.templates import Dialogue

BASE_KEYS = {
    "step",
    "round",
    "stage",
    "benign",
    "seed",
    "attack_raw",
    "attack",
    "selfbleu",
    "cosine",
    "response",
    "p_safe",
    "reward",
    "prompt",
    "turn",
    "dialogue",
}


def attack_records(
    run_dir: str | Path,
    *,
    min_success: float | None = None,
    include_eval: bool = False,
    unique: bool = False,
) -> list[dict[str, Any]]:
    run_dir = Path(run_dir)
    records = []
    for s in runs.read_jsonl(run_dir / "samples.jsonl"):
        if s.get("benign") or s.get("attack") is None:
            continue
        records.append(_record(s, source="train"))
    if include_eval:
        for path in sorted((run_dir / "eval").glob("*.samples.jsonl")):
            for s in runs.read_jsonl(path):
                if s.get("set") == "attacks":
                    r = {**s, "attack": s["prompt"], "stage": "eval", "step": None}
                    records.append(
                        _record(r, source=f"eval:{path.name.removesuffix('.samples.jsonl')}")
                    )
    if min_success is not None:
        records = [r for r in records if r["success"] is not None and r["success"] >= min_success]
    if unique:
        seen: set[str] = set()
        kept = []
        for r in records:
            if r["attack"] not in seen:
                seen.add(r["attack"])
                kept.append(r)
        records = kept
    return records


def _record(s: dict[str, Any], source: str) -> dict[str, Any]:
    p = s.get("p_safe")
    p = float(p) if isinstance(p, int | float) else None
    return {
        "attack": s["attack"],
        "seed": s.get("seed"),
        "response": s.get("response"),
        "p_safe": p,
        "success": None if p is None else 1.0 - p,
        "step": s.get("step"),
        "stage": s.get("stage"),
        "source": source,
        "attack_raw": s.get("attack_raw"),
        "selfbleu": s.get("selfbleu"),
        "cosine": s.get("cosine"),
        "messages": messages(s.get("dialogue") or [s["attack"]], s.get("response")),
        "turn": s.get("turn"),
        "judge": {
            k: v
            for k, v in s.items()
            if k not in BASE_KEYS and k not in ("set", "p_safe_eval", "kl_attacker", "kl_defender")
        }
        | ({"p_safe_eval": s["p_safe_eval"]} if s.get("p_safe_eval") is not None else {}),
    }


def messages(turns: list[str], response: str | None) -> list[dict[str, str]]:
    """A conversation (user, assistant, ..., user) and its answer as chat messages."""
    out = Dialogue(tuple(turns)).chat()
    return out + ([{"role": "assistant", "content": response}] if response is not None else [])


def write_jsonl(records: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def write_hf_dataset(records: list[dict[str, Any]], folder: Path) -> Path | None:
    """Save as a Hugging Face dataset; None when ``datasets`` is not installed."""
    try:
        import datasets
    except ImportError:
        return None
    flat = [
        {
            **{k: v for k, v in r.items() if k != "judge"},
            "judge": json.dumps(r["judge"], ensure_ascii=False),
        }
        for r in records
    ]
    features = datasets.Features(
        {
            "attack": datasets.Value("string"),
            "seed": datasets.Value("string"),
            "response": datasets.Value("string"),
            "p_safe": datasets.Value("float64"),
            "success": datasets.Value("float64"),
            "step": datasets.Value("int64"),
            "stage": datasets.Value("string"),
            "source": datasets.Value("string"),
            "attack_raw": datasets.Value("string"),
            "selfbleu": datasets.Value("float64"),
            "cosine": datasets.Value("float64"),
            # the chat format TRL and chat templates read: a list of {role, content}
            "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
            "turn": datasets.Value("int64"),
            "judge": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_list(flat, features=features)
    ds.save_to_disk(str(folder))
    return folder
