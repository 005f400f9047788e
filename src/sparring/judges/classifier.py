"""A judge backed by any sequence-classification model.

Toxicity or harmfulness classifiers (several labels, one of which means safe, or several of
which mean unsafe), multi-label classifiers (one sigmoid per label) and scalar reward models
(one logit, mapped through a sigmoid) all fit behind the same interface. The score is the
probability of the *positive* class: safe, or helpful with ``emit: helpful``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparring.errors import ConfigError, JudgeError, ModelError
from sparring.judges._hf import (
    default_name,
    escape_special,
    fit_pair,
    load_model,
    load_tokenizer,
    render_template,
    special_token_strings,
)
from sparring.judges.base import JudgeOutput, check_pairs
from sparring.judges.specs import ClassifierJudgeSpec


def resolve_label(label: int | str, id2label: dict[int, str], judge: str) -> int:
    """A label index from an index or a label name (exact, then case-insensitive)."""
    n = len(id2label)
    if isinstance(label, int):
        if not 0 <= label < n:
            raise ConfigError(
                f"judge {judge!r}: label index {label} out of range; labels: {id2label}"
            )
        return label
    exact = [i for i, name in id2label.items() if name == label]
    if not exact:
        exact = [i for i, name in id2label.items() if str(name).lower() == label.lower()]
    if len(exact) != 1:
        raise ConfigError(f"judge {judge!r}: no single label named {label!r}; labels: {id2label}")
    return int(exact[0])


class ClassifierJudge:
    """P(safe) (or P(helpful)) from an ``AutoModelForSequenceClassification``."""

    def __init__(self, spec: ClassifierJudgeSpec):
        self.spec = spec
        self.name = spec.name or default_name(spec.model)
        self.tokenizer = load_tokenizer(spec, padding_side="right")
        tok_path = spec.tokenizer or spec.model
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ModelError(
                    f"judge {self.name!r}: tokenizer {tok_path!r} has no pad or eos token"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if spec.input == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"judge {self.name!r}: input: chat but tokenizer {tok_path!r} has no chat template"
            )
        self._specials = special_token_strings(self.tokenizer) if spec.escape_special_tokens else []
        self.model, self.device = load_model(spec, "AutoModelForSequenceClassification")
        cfg = self.model.config
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
        self.num_labels = int(cfg.num_labels)
        id2label = {int(k): str(v) for k, v in (getattr(cfg, "id2label", None) or {}).items()}
        id2label = id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self._setup_mapping(id2label, getattr(cfg, "problem_type", None))
        self.max_length = spec.max_length or self._default_max_length()

    def _setup_mapping(self, id2label: dict[int, str], problem_type: str | None) -> None:
        spec = self.spec
        self.positive: int | None = None
        self.negatives: list[int] | None = None
        if self.num_labels == 1:
            if spec.positive_label is not None or spec.negative_labels is not None:
                raise ConfigError(
                    f"judge {self.name!r}: the model has a single logit; drop positive_label/"
                    f"negative_labels and set sigmoid_scale/sigmoid_offset instead"
                )
            self.activation = "scalar"
            return
        if spec.positive_label is None and spec.negative_labels is None:
            raise ConfigError(
                f"judge {self.name!r}: the model has {self.num_labels} labels {id2label}; set "
                f"positive_label (the label meaning {spec.emit}) or negative_labels"
            )
        if spec.positive_label is not None:
            self.positive = resolve_label(spec.positive_label, id2label, self.name)
        else:
            assert spec.negative_labels is not None
            self.negatives = sorted(
                {resolve_label(x, id2label, self.name) for x in spec.negative_labels}
            )
        if spec.activation == "auto":
            self.activation = (
                "sigmoid" if problem_type == "multi_label_classification" else "softmax"
            )
        else:
            self.activation = spec.activation

    def _default_max_length(self) -> int:
        limits = []
        tml = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tml, int) and 0 < tml < 1_000_000:
            limits.append(tml)
        mpe = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(mpe, int) and mpe > 0:
            limits.append(mpe)
        return min(limits) if limits else 512

    # ---------------------------------------------------------------- encoding
    def _encode(
        self, prompt: str, response: str, *, truncate: bool = False
    ) -> dict[str, list[int]]:
        tok = self.tokenizer
        extra: dict[str, Any] = (
            {"truncation": True, "max_length": self.max_length} if truncate else {}
        )
        mode = self.spec.input
        if mode == "pair":
            enc = tok(prompt, response, **extra)
        elif mode == "response":
            enc = tok(response, **extra)
        elif mode == "template":
            assert self.spec.template is not None
            enc = tok(render_template(self.spec.template, prompt, response), **extra)
        else:
            conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            try:
                text = tok.apply_chat_template(conv, tokenize=False)
            except Exception as exc:
                raise JudgeError(f"judge {self.name!r}: chat template failed: {exc}") from exc
            enc = tok(text, add_special_tokens=False, **extra)
        return {k: list(v) for k, v in enc.items()}

    def encode(self, prompt: str, response: str) -> dict[str, list[int]]:
        """Model inputs for one pair, cut in the middle of the texts to fit ``max_length``."""
        prompt = escape_special(prompt, self._specials)
        response = escape_special(response, self._specials)
        if self.spec.input == "response":
            prompt = ""
        prompt, response = fit_pair(
            lambda p, r: len(self._encode(p, r)["input_ids"]),
            self.tokenizer,
            prompt,
            response,
            self.max_length,
            marker=self.spec.truncation_marker,
            judge=self.name,
        )
        return self._encode(prompt, response, truncate=True)

    # ---------------------------------------------------------------- scoring
    def probabilities(self, logits: Any) -> Any:
        """Positive-class probability per row from a (batch, num_labels) float tensor."""
        import torch

        if self.activation == "scalar":
            s = self.spec
            return torch.sigmoid(s.sigmoid_scale * (logits[:, 0] - s.sigmoid_offset))
        probs = torch.softmax(logits, -1) if self.activation == "softmax" else torch.sigmoid(logits)
        if self.positive is not None:
            return probs[:, self.positive]
        assert self.negatives is not None
        neg = probs[:, self.negatives]
        if self.activation == "softmax":
            return (1.0 - neg.sum(-1)).clamp(0.0, 1.0)
        return 1.0 - neg.max(-1).values

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> JudgeOutput:
        import torch

        check_pairs(prompts, responses)
        n = len(prompts)
        scores = [0.0] * n
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        order = sorted(range(n), key=lambda i: -len(encoded[i]["input_ids"]))
        bs = self.spec.batch_size
        for start in range(0, n, bs):
            rows = order[start : start + bs]
            batch = self.tokenizer.pad([encoded[i] for i in rows], return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.no_grad():
                logits = self.model(**batch).logits.float()
            for i, p in zip(rows, self.probabilities(logits).tolist(), strict=True):
                scores[i] = float(p)
        if self.spec.emit == "helpful":
            return JudgeOutput(p_safe=[1.0] * n, extras={"helpful": scores})
        return JudgeOutput(p_safe=scores)
