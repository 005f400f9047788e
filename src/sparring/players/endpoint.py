"""A defender behind an OpenAI-compatible endpoint: it answers, it never learns.

Each prompt goes to the server as one user message, and a dialogue as its messages (the
server applies the model's chat template). Answers are cached in the run folder by a hash of the request and its draw (the step
and row that asked), so a resumed run replays what it already paid for and pays only for new
rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sparring.endpoints import EndpointClient, EndpointSpec
from sparring.players.sampling import sample_keys
from sparring.players.templates import Dialogue


@dataclass
class Answers:
    """What a rollout reads of a generation: the texts, the inputs, and a response mask whose
    row sums are the answers' token counts (as the server counted them)."""

    texts: list[str]
    inputs: list[str]
    response_mask: torch.Tensor  # [B, max tokens]
    blocked: list[bool] | None = None  # the provider's content filter refused (text: BLOCKED)


class EndpointPlayer:
    """A frozen player served by an endpoint (``defender.type: openai``, or an ``--against``
    target ``openai:MODEL@URL``)."""

    trainable = False
    has_value = False
    reference = None

    def __init__(
        self,
        role: str,
        spec: EndpointSpec,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        system: str | None = None,
        cache_path: Path | None = None,
    ):
        self.role = role
        self.spec = spec
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.system = system
        self.client = EndpointClient(spec, cache_path=cache_path, name=f"{role} {spec.model}")

    @classmethod
    def from_config(cls, role: str, cfg, cache_path: Path | None = None) -> EndpointPlayer:
        """From a ``type: openai`` defender config (its generation settings and system prompt)."""
        g = cfg.generation
        return cls(
            role,
            cfg.endpoint,
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            system=cfg.template.system,
            cache_path=cache_path,
        )

    @property
    def label(self) -> str:
        return f"{self.spec.model}@{self.spec.base_url}"

    def use_cache(self, folder: Path, role: str | None = None, budget: Path | None = None) -> None:
        """Keep answers in ``folder/<role>.sqlite`` (a run's ``cache/``); ``budget``: the file
        where the run's processes count its request budget together."""
        self.client.close()
        self.client = EndpointClient(
            self.spec,
            cache_path=folder / f"{role or self.role}.sqlite",
            name=self.client.name,
            budget_path=budget,
        )

    def generate(
        self, texts: list, draws: Sequence[str] | None = None, *, keyed: bool = False
    ) -> Answers:
        """One answer per text. ``draws`` names each sample (its step and row) so that the same
        prompt asked again later is sampled anew, while a replayed step hits the cache; without
        them the samples are named by this player's call count and row. ``keyed`` changes
        nothing here: a served answer is already keyed by its name, through the cache."""
        inputs = [str(t) for t in texts]  # a dialogue as its transcript
        if draws is None:  # named by the text and its repeat: stable across resumes
            draws = sample_keys(f"{self.role}/unnamed", inputs)
        conversations = [
            ([{"role": "system", "content": self.system}] if self.system else [])
            + (t.chat() if isinstance(t, Dialogue) else [{"role": "user", "content": t}])
            for t in texts
        ]
        answers = self.client.chat(
            conversations,
            max_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            draws=draws,
        )
        lengths = [max(a.completion_tokens, 1 if a.text else 0) for a in answers]
        mask = torch.zeros(len(texts), max(lengths, default=0) or 1, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        return Answers([a.text for a in answers], inputs, mask, [a.blocked for a in answers])

    def export(self, directory: Path) -> None:
        """``endpoint.json``: which served model played (never the API key, only its variable)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "endpoint.json").write_text(
            json.dumps(self.spec.model_dump(mode="json"), indent=2), encoding="utf-8"
        )

    def close(self) -> None:
        self.client.close()
