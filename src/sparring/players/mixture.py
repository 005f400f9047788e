"""A mixed strategy as a deployable model: several snapshots of a player and a weight for each;
every request is answered by one snapshot, drawn by its weight.

This is what game theory hands back from an opponent pool (the Nash mixture of the empirical
game, ``game.pool.deploy: nash``): not one set of weights, but a distribution over them. It is
written as a folder holding ``mixture.json`` and one plain Hugging Face model folder per member
(:func:`write_mixture`), and loaded by every command that loads a model folder
(:class:`MixturePlayer`).

The draw of a request's member is keyed like evaluation's sampling
(:mod:`sparring.players.sampling`): a named sample gets the same member, whatever ran before or
beside it, so a mixture's figures are as reproducible as a single model's; an unnamed one is
drawn from the global RNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparring.errors import ModelError
from sparring.players.sampling import key_seed

FILE = "mixture.json"
SCHEMA = "sparring.mixture/1"


def is_mixture(path: str | Path) -> bool:
    """True when ``path`` is a mixture folder (it holds ``mixture.json``)."""
    return (Path(path) / FILE).is_file()


def write_mixture(directory: Path, members: Sequence[tuple[str, float]], note: str) -> None:
    """``mixture.json`` in ``directory``: each member's folder (relative to it) and weight
    (renormalised to sum to 1); ``note`` says where the weights came from."""
    total = sum(w for _, w in members)
    if not members or total <= 0:
        raise ValueError("a mixture needs at least one member with a positive weight")
    data = {
        "schema": SCHEMA,
        "note": note,
        "members": [{"path": p, "weight": w / total} for p, w in members],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")


def read_mixture(directory: str | Path) -> list[tuple[Path, float]]:
    """The members of a mixture folder as (model folder, weight); a ModelError names what is
    wrong."""
    directory = Path(directory)
    try:
        data = json.loads((directory / FILE).read_text(encoding="utf-8"))
        members = [(directory / m["path"], float(m["weight"])) for m in data["members"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{directory / FILE}: not a readable mixture: {exc}") from None
    if data.get("schema") != SCHEMA or not members:
        raise ModelError(f"{directory / FILE}: expected {SCHEMA} with at least one member")
    for path, w in members:
        if not path.is_dir() or not w >= 0:
            raise ModelError(f"{directory / FILE}: member {path.name}: missing folder or weight")
    return members


@dataclass
class MixtureAnswers:
    """What a rollout and evaluation read of a mixture's generation: the texts, the inputs,
    a response mask whose row sums are the answers' token counts, and which member answered."""

    texts: list[str]
    inputs: list[str]
    response_mask: torch.Tensor  # [B, max tokens]
    members: list[int]


class MixturePlayer:
    """A frozen player that answers each request with one member, drawn by weight. ``members``
    are loaded players (:class:`~sparring.players.player.Player`), all kept in memory."""

    trainable = False
    reference = None

    def __init__(
        self,
        role: str,
        members: Sequence,
        weights: Sequence[float],
        label: str = "",
        directory: Path | None = None,
    ):
        self.role = role
        self.directory = directory
        self.members = list(members)
        w = np.asarray(weights, dtype=np.float64)
        self.cumulative = np.cumsum(w / w.sum())
        self.label = label

    @classmethod
    def load(cls, role: str, directory: str | Path, cfg, accelerator) -> MixturePlayer:
        """Every member of the mixture folder, as ``cfg`` (the run's player settings: template,
        generation) loads a model folder."""
        from sparring.players.player import Player

        members, weights = [], []
        for path, w in read_mixture(directory):
            update = {"model": str(path), "lora": None, "gguf_file": None, "revision": None}
            member_cfg = cfg.model_copy(update=update, deep=True)
            player = Player.build(role, member_cfg, accelerator, trainable=False)
            player.module.eval()
            members.append(player)
            weights.append(w)
        return cls(role, members, weights, label=Path(directory).name, directory=Path(directory))

    def choose(self, draws: Sequence[str] | None, n: int) -> list[int]:
        """The member answering each of ``n`` requests: from each draw's name (keyed), else
        from the global RNG."""
        if draws is None:
            u = torch.rand(n, dtype=torch.float64).tolist()
        else:
            u = [key_seed(f"mixture\x1f{d}") / 2**63 for d in draws]
        last = len(self.members) - 1
        return [min(int(np.searchsorted(self.cumulative, x, side="right")), last) for x in u]

    def generate(
        self, texts: list[str], draws: Sequence[str] | None = None, *, keyed: bool = False
    ) -> MixtureAnswers:
        chosen = self.choose(draws, len(texts))
        out = [""] * len(texts)
        lengths = [0] * len(texts)
        for m, player in enumerate(self.members):
            rows = [i for i, c in enumerate(chosen) if c == m]
            if not rows:
                continue
            sub = [texts[i] for i in rows]
            keys = [draws[i] for i in rows] if draws is not None else None
            gen = player.generate(sub, keys, keyed=keyed and keys is not None)
            counts = gen.response_mask.sum(-1).tolist()
            for i, t, n in zip(rows, gen.texts, counts, strict=True):
                out[i], lengths[i] = t, int(n)
        mask = torch.zeros(len(texts), max(lengths, default=0) or 1, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        return MixtureAnswers(out, list(texts), mask, chosen)

    @property
    def max_new_tokens(self) -> int:
        return self.members[0].cfg.generation.max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, value: int) -> None:
        """Evaluation's answer length, for every member (:func:`answering_at` sets it)."""
        for player in self.members:
            player.cfg.generation.max_new_tokens = value

    def export(self, directory: Path) -> None:
        """The mixture folder again, at ``directory`` (a run that played against it hands it
        back as it found it)."""
        import shutil

        if self.directory is None:
            raise ModelError("this mixture was not loaded from a folder: nothing to export")
        shutil.copytree(self.directory, directory, dirs_exist_ok=True)

    def close(self) -> None:
        self.members = []
