"""Keyed sampling: each answer's randomness comes from its own name, not from the global RNG.

``generate(do_sample=True)`` draws every row of a batch from one generator, so an answer
depends on the rows beside it and on everything sampled before it in the process: the same
frozen model evaluated after another arm's evaluation gets other answers, and other figures.
Evaluation needs the opposite: the same weights, asked the same prompt under the same name
(evaluation seed, prompt set, prompt, answer index), give the same answer whatever ran before,
in any arm, on a resumed run and at any batch position.

The Gumbel-max trick makes that exact rather than approximate: with G_v i.i.d. Gumbel(0, 1),
``argmax_v(logits_v + G_v)`` is a draw from ``softmax(logits)`` (Gumbel 1954; Maddison et al.
2014, "A* sampling"). :class:`KeyedGumbel` adds, at generation step t of row i, noise read from
a generator seeded by row i's key alone; greedy decoding then takes the argmax. The logits are
first shaped exactly as sampling shapes them (repetition penalty and minimum length by
transformers' own processors, then temperature, top-k and top-p by its own warpers, in
transformers' order), so a keyed answer has the distribution of a sampled one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

import torch


def key_seed(key: str) -> int:
    """A 63-bit seed from a sample's name (BLAKE2b: stable across processes and Python runs,
    unlike ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def sample_keys(namespace: str, texts: Sequence[str]) -> list[str]:
    """One key per text: ``namespace``, the text's answer index (how often the same text came
    before it in ``texts``) and the text. A prompt answered k times gets keys 0..k-1, whatever
    else is in the list or in what order."""
    seen: dict[str, int] = {}
    out = []
    for t in texts:
        n = seen.get(t, 0)
        seen[t] = n + 1
        out.append(f"{namespace}\x1f{n}\x1f{t}")
    return out


class KeyedGumbel:
    """A logits processor (transformers' ``LogitsProcessor`` call signature) that adds Gumbel
    noise keyed per row: row i's noise at every step comes from its own CPU generator seeded by
    ``key_seed(keys[i])``, so it does not depend on the batch, the device or the global RNG.
    Use with greedy decoding (``do_sample=False``): the argmax is then a sample."""

    def __init__(self, keys: Sequence[str]):
        self.generators = []
        for k in keys:
            g = torch.Generator(device="cpu")
            g.manual_seed(key_seed(k))
            self.generators.append(g)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` [B, V] (float) -> ``scores`` + Gumbel(0, 1) noise [B, V]; -inf stays
        -inf, so tokens a warper removed are never drawn."""
        if scores.shape[0] != len(self.generators):
            raise ValueError(
                f"keyed sampling: {len(self.generators)} keys for a batch of {scores.shape[0]} rows"
            )
        vocab = scores.shape[-1]
        u = torch.stack(
            [torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators]
        )
        tiny = torch.finfo(torch.float64).tiny
        gumbel = -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-16)))
        return scores + gumbel.to(device=scores.device, dtype=scores.dtype)


def keyed_processors(
    keys: Sequence[str], *, temperature: float, top_k: int | None, top_p: float | None
):
    """The processors of a keyed draw, after transformers' own (repetition penalty, minimum
    length): temperature, top-k (off when 0 or None), top-p (off at 1), then the keyed noise."""
    from transformers import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if temperature is not None and temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p=top_p))
    procs.append(KeyedGumbel(keys))
    return procs


@contextlib.contextmanager
def sampling_as_configured(model):
    """Generate with ``model`` as if its checkpoint shipped no ``generation_config.json``.

    ``generate`` fills every field its ``GenerationConfig`` leaves None from the model's own
    generation config (Qwen2.5-Instruct ships top-k 20, top-p 0.8 and a repetition penalty of
    1.05; others min-p, suppressed tokens or n-gram bans), then from transformers' global
    defaults. Inside this context the model's is a blank config, so the only fields filled are
    the global defaults, which are neutral except top-k 50, and :func:`generation_setup` always
    sets top-k. What is sampled is then what the player's settings say, and nothing else.
    """
    from transformers import GenerationConfig

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = inner.generation_config
    inner.generation_config = GenerationConfig()
    try:
        yield
    finally:
        inner.generation_config = saved


def eos_ids(tokenizer, model) -> list[int]:
    """The tokens that end a sample: the tokenizer's end-of-sequence token and every one the
    model's generation config names (chat models often end a turn with a token of their own)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(int(i) for i in gen_eos)
    return sorted(ids)


def generation_setup(g, *, pad_token_id: int, eos_ids: list[int], keys: Sequence[str] | None):
    """``(GenerationConfig, logits processors or None)`` for a player's generation settings
    ``g``: with ``keys``, greedy decoding over keyed Gumbel noise (the warpers
    :func:`keyed_processors` names shape the logits as sampling would); without, transformers'
    sampling from the global RNG.

    Either way the draw is from exactly what ``g`` says: softmax(logits / temperature), cut by
    top-k only when ``top_k`` > 0 and by top-p only below 1, with a repetition penalty only
    when ``repetition_penalty`` is not 1 (generate inside :func:`sampling_as_configured`, so that
    no field of the checkpoint's ``generation_config.json`` is filled in): with the defaults
    (``top_k: 0``, ``top_p: 1``) training samples from the full distribution its ratios and KL
    are computed on.
    """
    from transformers import GenerationConfig

    shared = {
        "max_new_tokens": g.max_new_tokens,
        "min_new_tokens": g.min_new_tokens,
        "repetition_penalty": g.repetition_penalty,
        "pad_token_id": pad_token_id,
        "eos_token_id": eos_ids,
        "use_cache": True,
    }
    if keys is not None:
        procs = keyed_processors(keys, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
        return GenerationConfig(do_sample=False, **shared), procs
    cfg = GenerationConfig(
        do_sample=True,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,  # 0 is off; None would let transformers fill in 50
        **shared,
    )
    return cfg, None
