"""The proxy judge: a bag-of-n-grams logistic regression trained on oracle labels.

Features are binary: prompt unigrams (``p:word``), response unigrams (``r:word``) and response
bigrams (``b:w1_w2``), over the same normalised words the oracle reads. Two heads: ``safe``
(P(safe), trained on every sample) and ``helpful`` (P(a benign request got a helpful answer),
trained on benign-request samples only). It is trained on a limited slice of the world (no
held-out framing, few obfuscated or multi-step requests, few refuse-then-comply answers), so it
is good but imperfect and can be gamed, as real reward models can.

Stored as ``proxy.json`` (feature list, heads, training facts) and ``weights.safetensors``
(``weight``: [n_features, 2], ``bias``: [2]).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from sparring.arena.oracle import normalize

HEADS = ("safe", "helpful")
CONFIG_FILE = "proxy.json"
WEIGHTS_FILE = "weights.safetensors"


def features(prompt: str, response: str) -> set[str]:
    p = normalize(prompt)
    r = normalize(response)
    out = {f"p:{w}" for w in p}
    out |= {f"r:{w}" for w in r}
    out |= {f"b:{a}_{b}" for a, b in zip(r, r[1:], strict=False)}
    if not r:
        out.add("r:<empty>")
    return out


class ProxyModel:
    """A trained proxy judge: ``predict(prompts, responses) -> (p_safe, p_helpful)``."""

    def __init__(self, feature_names: Sequence[str], weight: np.ndarray, bias: np.ndarray):
        self.feature_names = list(feature_names)
        self.index = {f: i for i, f in enumerate(self.feature_names)}
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)

    def logits(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        out = np.repeat(self.bias[None, :], len(prompts), axis=0).astype(np.float64)
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            idx = [self.index[f] for f in features(p, r) if f in self.index]
            if idx:
                out[i] += self.weight[idx].sum(axis=0)
        return out

    def predict(self, prompts: Sequence[str], responses: Sequence[str]):
        z = np.clip(self.logits(prompts, responses), -30.0, 30.0)
        p = 1.0 / (1.0 + np.exp(-z))
        return p[:, 0].tolist(), p[:, 1].tolist()

    def save(self, directory: str | Path, info: dict | None = None) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight, "bias": self.bias}, str(d / WEIGHTS_FILE))
        cfg = {"kind": "bow-logreg", "heads": list(HEADS), "features": self.feature_names}
        cfg.update(info or {})
        (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> ProxyModel:
        d = Path(directory)
        cfg = json.loads((d / CONFIG_FILE).read_text())
        t = load_file(str(d / WEIGHTS_FILE))
        return cls(cfg["features"], t["weight"], t["bias"])


def train_proxy(
    rows: Sequence[dict], *, l2: float = 1e-3, steps: int = 300, min_count: int = 2, seed: int = 0
) -> ProxyModel:
    """Fit both heads on oracle-labelled rows (``prompt``, ``response``, ``safe``, ``helpful``,
    ``harmful``) by full-batch L-BFGS on the L2-regularised logistic loss."""
    feats = [features(r["prompt"], r["response"]) for r in rows]
    counts = Counter(f for fs in feats for f in fs)
    names = sorted(f for f, c in counts.items() if c >= min_count)
    index = {f: i for i, f in enumerate(names)}
    x = torch.zeros((len(rows), len(names)), dtype=torch.float64)
    for i, fs in enumerate(feats):
        for f in fs:
            j = index.get(f)
            if j is not None:
                x[i, j] = 1.0
    y = torch.tensor([[float(r["safe"]), float(r["helpful"])] for r in rows], dtype=torch.float64)
    # the helpful head only learns from benign requests
    mask = torch.ones_like(y)
    mask[:, 1] = torch.tensor([0.0 if r["harmful"] else 1.0 for r in rows], dtype=torch.float64)
    torch.manual_seed(seed)
    w = torch.zeros((len(names), 2), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = x @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
        loss = (loss * mask).sum(0) / mask.sum(0).clamp(min=1.0)
        total = loss.sum() + l2 * (w**2).sum()
        total.backward()
        return total

    opt.step(closure)
    return ProxyModel(names, w.detach().numpy().astype(np.float32), b.detach().numpy())


def accuracy(model: ProxyModel, rows: Sequence[dict]) -> dict:
    """Accuracy of both heads against the oracle's labels (``helpful`` on benign rows only)."""
    if not rows:
        return {"n": 0, "safe_accuracy": None, "helpful_accuracy": None}
    ps, ph = model.predict([r["prompt"] for r in rows], [r["response"] for r in rows])
    safe_ok = [(p >= 0.5) == bool(r["safe"]) for p, r in zip(ps, rows, strict=True)]
    unsafe_rows = [ok for ok, r in zip(safe_ok, rows, strict=True) if not r["safe"]]
    ben = [
        (h >= 0.5) == bool(r["helpful"]) for h, r in zip(ph, rows, strict=True) if not r["harmful"]
    ]
    return {
        "n": len(rows),
        "safe_accuracy": sum(safe_ok) / len(rows),
        "unsafe_recall": sum(unsafe_rows) / len(unsafe_rows) if unsafe_rows else None,
        "helpful_accuracy": sum(ben) / len(ben) if ben else None,
    }
