"""A batch of sampled sequences: the tensors rollouts hand to the RL update.

Leaf of :mod:`sparring.rl`: the players fill a :class:`Generation`, the trainer reads it; neither
side needs the other's code for that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Generation:
    """One batch of sampled continuations (tensors on the player's device)."""

    query_ids: torch.Tensor  # [B, P] left-padded
    query_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, R]
    response_mask: torch.Tensor  # [B, R] 1 up to and including the first end-of-sequence token
    texts: list[str]  # decoded responses, special tokens removed
    inputs: list[str]  # the formatted model inputs
    # [B, R] log-probs of the sampled tokens under the sampling policy (raw logits / temperature),
    # recorded during generation on the fast path; None when not recorded
    logprobs: torch.Tensor | None = None

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = torch.cat([self.query_ids, self.response_ids], dim=1)
        mask = torch.cat([self.query_mask, self.response_mask], dim=1)
        return ids, mask, position_ids(mask)


def slice_generation(gen: Generation, idx: torch.Tensor) -> Generation:
    """Rows ``idx`` of a generation."""
    rows = idx.tolist()
    return Generation(
        gen.query_ids[idx],
        gen.query_mask[idx],
        gen.response_ids[idx],
        gen.response_mask[idx],
        [gen.texts[i] for i in rows],
        [gen.inputs[i] for i in rows],
        gen.logprobs[idx] if gen.logprobs is not None else None,
    )


def stack_generations(parts: list[Generation], pad_id: int) -> Generation:
    """Generations of different widths as one batch (rows in order): queries left-padded and
    responses right-padded with ``pad_id`` under a zero mask, as a single generate() pads them.
    How one update reads the turns of dialogues, each turn generated on its own."""
    width_q = max(g.query_ids.shape[1] for g in parts)
    width_r = max(g.response_ids.shape[1] for g in parts)

    def pad(x: torch.Tensor, width: int, left: bool, value) -> torch.Tensor:
        fill = x.new_full((x.shape[0], width - x.shape[1]), value)
        return torch.cat([fill, x] if left else [x, fill], dim=1)

    logprobs = None
    if all(g.logprobs is not None for g in parts):
        logprobs = torch.cat([pad(g.logprobs, width_r, False, 0.0) for g in parts])
    return Generation(
        torch.cat([pad(g.query_ids, width_q, True, pad_id) for g in parts]),
        torch.cat([pad(g.query_mask, width_q, True, 0) for g in parts]),
        torch.cat([pad(g.response_ids, width_r, False, pad_id) for g in parts]),
        torch.cat([pad(g.response_mask, width_r, False, 0) for g in parts]),
        [t for g in parts for t in g.texts],
        [t for g in parts for t in g.inputs],
        logprobs,
    )


def concat(parts: list):
    """``torch.cat`` of optional tensors (None when the parts are None)."""
    return None if parts[0] is None else torch.cat(parts)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens, as generate() does for left-padded batches."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)
