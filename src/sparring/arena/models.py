"""Tiny GPT-2 players for the arena: configuration, SFT training loop and sampling.

Plain torch: AdamW, linear warm-up then cosine decay, loss on the target tokens only (the
formatted prompt is context). Deterministic for a given seed and torch thread count.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ModelSize:
    n_embd: int
    n_layer: int
    n_head: int
    n_positions: int = 128


# (defender, attacker) per arena size
MODEL_SIZES: dict[str, dict[str, ModelSize]] = {
    "default": {
        "defender": ModelSize(n_embd=128, n_layer=3, n_head=4),
        "attacker": ModelSize(n_embd=128, n_layer=2, n_head=4),
    },
    # a defender with less room: it cannot learn every framing and stack as a separate case
    "hard": {
        "defender": ModelSize(n_embd=64, n_layer=2, n_head=4),
        "attacker": ModelSize(n_embd=128, n_layer=2, n_head=4),
    },
    "dialogue": {  # the default world's players: conversations are what is new
        "defender": ModelSize(n_embd=128, n_layer=3, n_head=4),
        "attacker": ModelSize(n_embd=128, n_layer=2, n_head=4),
    },
    "tiny": {
        "defender": ModelSize(n_embd=32, n_layer=1, n_head=2),
        "attacker": ModelSize(n_embd=32, n_layer=1, n_head=2),
    },
}
MODEL_SIZES["tiny-dialogue"] = MODEL_SIZES["tiny"]  # seconds to build, for tests


def make_model(tok: PreTrainedTokenizerBase, size: ModelSize, seed: int) -> GPT2LMHeadModel:
    """A freshly initialised tiny GPT-2 for ``tok``'s vocabulary."""
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=size.n_positions,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        n_inner=4 * size.n_embd,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(cfg)
    model.loss_type = "ForCausalLM"
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.eos_token_id
    return model


def encode_examples(
    tok: PreTrainedTokenizerBase, contexts: Sequence[str], targets: Sequence[str]
) -> list[tuple[list[int], int]]:
    """``(ids, n_context)`` per example: the context's tokens, the target's, then eos.

    Contexts are tokenized exactly as the game engine does (``add_special_tokens=True``).
    """
    ctx = tok(list(contexts), add_special_tokens=True)["input_ids"]
    tgt = tok(list(targets), add_special_tokens=False)["input_ids"]
    return [(c + t + [tok.eos_token_id], len(c)) for c, t in zip(ctx, tgt, strict=True)]


def _batch(examples: Sequence[tuple[list[int], int]], pad_id: int):
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (ids, n_ctx) in enumerate(examples):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[i, : len(ids)] = t
        attn[i, : len(ids)] = 1
        labels[i, n_ctx : len(ids)] = t[n_ctx:]
    return input_ids, attn, labels


def _epoch(n: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of shuffled batches (mixed lengths: length-sorted batches train worse here)."""
    order = list(range(n))
    rng.shuffle(order)
    return [order[k : k + batch_size] for k in range(0, n, batch_size)][::-1]


def train_lm(
    model: GPT2LMHeadModel,
    examples: Sequence[tuple[list[int], int]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    pad_id: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` on ``examples`` for ``steps`` AdamW steps; returns the loss curve."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warm = max(1, steps // 20)

    def lr_at(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    batches: list[list[int]] = []
    losses: list[float] = []
    model.train()
    for step in range(steps):
        if not batches:
            batches = _epoch(len(examples), batch_size, rng)
        idx = batches.pop()
        input_ids, attn, labels = _batch([examples[i] for i in idx], pad_id)
        loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def sample(
    model: GPT2LMHeadModel,
    tok: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
) -> list[str]:
    """Sample one continuation per context, the way the game engine does.

    Contexts are tokenized with ``add_special_tokens=True`` and left-padded; new tokens are
    decoded with ``skip_special_tokens=True``.
    """
    torch.manual_seed(seed)
    model.eval()
    side = tok.padding_side
    tok.padding_side = "left"
    out: list[str] = []
    try:
        for i in range(0, len(contexts), batch_size):
            enc = tok(list(contexts[i : i + batch_size]), return_tensors="pt", padding=True)
            gen = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            out += tok.batch_decode(new, skip_special_tokens=True)
    finally:
        tok.padding_side = side
    return [o.strip() for o in out]
