"""RL arithmetic shared by both players: log-probs, KL, GAE, group advantages, PPO losses.

All tensors are ``[batch, tokens]`` over the generated tokens, with ``mask`` marking real tokens
(1) against padding after the end of a sequence (0). Each function is small and tested against
hand-computed values in ``tests/test_rl_core.py``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1.0)
    return var


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    min_std: float = 1e-5,
) -> torch.Tensor:
    """(x - mean) / std over the masked entries; ``shift_mean=False`` adds the mean back.

    Below ``min_std`` the spread is rounding noise (e.g. every reward in the batch equal), and
    dividing by it would blow noise up to unit-size updates: then only the mean is removed.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    scale = torch.rsqrt(var + eps) if var.sqrt() >= min_std else torch.ones_like(var)
    out = (x - mean) * scale
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[tokens] without materialising the full log-softmax tensor."""
    logits = logits.float()
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1, keepdim=True)
    p = torch.exp(logits - logz)
    return logz.squeeze(-1) - (p * logits).sum(-1)


# positions whose full-vocabulary logits exist at one time in head_logprobs (1024 x 32k x 4 bytes
# = 128 MiB; a 152k vocabulary, 600 MiB)
HEAD_CHUNK = 1024


def head_logprobs(
    hidden: torch.Tensor,
    head,
    tokens: torch.Tensor,
    temperature: float = 1.0,
    *,
    entropy: bool = False,
    entropy_grad: bool = False,
    chunk: int = HEAD_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``tokens`` [B, R] (and optionally the entropy) from the final hidden states
    ``hidden`` [B, R, H] through the LM head ``head``, at ``temperature``.

    Why: the full-vocabulary logits of a batch ([B, R, V], and the float32 copies that a
    temperature and a log-softmax make of them) are the largest tensors of an RL update: tens of
    GB for 512-token answers and a 150k vocabulary. Here at most ``chunk`` positions have logits
    at a time. With autograd on, each chunk is recomputed in the backward pass (activation
    checkpointing): the graph keeps only ``hidden``, never the logits. The entropy is outside the
    graph unless ``entropy_grad``.
    """
    B, R, H = hidden.shape
    flat_h = hidden.reshape(B * R, H)
    flat_t = tokens.reshape(B * R)
    grad = torch.is_grad_enabled() and hidden.requires_grad

    def chunk_fn(h: torch.Tensor, t: torch.Tensor):
        logits = head(h).float() / temperature
        logp = logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        if not entropy:
            return logp, None
        with contextlib.nullcontext() if entropy_grad else torch.no_grad():
            return logp, entropy_from_logits(logits)

    logps, ents = [], []
    for s in range(0, B * R, chunk):
        args = (flat_h[s : s + chunk], flat_t[s : s + chunk])
        if grad:
            lp, ent = torch.utils.checkpoint.checkpoint(chunk_fn, *args, use_reentrant=False)
        else:
            lp, ent = chunk_fn(*args)
        logps.append(lp)
        ents.append(ent)
    if not logps:
        empty = hidden.new_zeros(B, R, dtype=torch.float32)
        return empty, (empty if entropy else None)
    logprobs = torch.cat(logps).view(B, R)
    return logprobs, (torch.cat(ents).view(B, R) if entropy else None)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token in each row (rows need at least one)."""
    return (mask.long().sum(-1) - 1).clamp(min=0)


def shaped_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: ``-kl_coef * (logp - logp_ref)`` plus the scalar score at the last token.

    Returns (rewards, per-token kl), both zero on padding.
    """
    m = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * m
    rewards = -kl_coef * kl
    idx = last_token_index(mask)
    rewards[torch.arange(rewards.shape[0]), idx] += scores.to(rewards.dtype)
    return rewards * m, kl


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded sequences.

    The value after the last real token is 0 (the episode ends there). Returns
    (advantages, returns) with returns = advantages + values; both zero on padding.
    """
    m = mask.to(values.dtype)
    values = values * m
    rewards = rewards * m
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last
        # padding must not carry advantage backwards into real tokens
        last = last * m[:, t]
        adv[:, t] = last
    return adv, (adv + values) * m


def turn_returns(rewards: torch.Tensor, played: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return-to-go over the turns of dialogues: ``G_t = r_t + gamma * G_{t+1}``.

    ``rewards`` [E, T] is each episode's reward at each of its turns, ``played`` [E, T] (bool)
    marks the turns it played: a prefix, since a dialogue stops at its first unsafe answer.
    Unplayed turns get 0 and pass nothing back. Each turn's sampled text is then credited with
    what followed it, discounted by how many turns away it came (MTSA's future reward, Guo et
    al. 2025): a first turn that only sets the scene still earns the success it led to, and
    ``gamma`` < 1 prefers successes reached sooner. With ``gamma`` = 1 every turn of an episode
    is credited with the episode's whole return (episode-level credit, as GRPO over whole
    dialogues gives). Returns [E, T], zero where not played.
    """
    if rewards.shape != played.shape or rewards.dim() != 2:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and played {tuple(played.shape)}: need [E, T]"
        )
    m = played.to(rewards.dtype)
    out = torch.zeros_like(rewards)
    nxt = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        nxt = (rewards[:, t] + gamma * nxt) * m[:, t]
        out[:, t] = nxt
    return out


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    method: str,
    eps: float = 1e-4,
    min_std: float = 1e-6,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Critic-free advantages for rows laid out as consecutive groups of ``group_size``.

    ``rloo``: reward minus the mean of the *other* samples of the same prompt.
    ``grpo``: (reward - group mean) / (group std + eps), std unbiased; eps 1e-4 as in TRL's
    GRPOTrainer; a group whose spread is below ``min_std`` (all rewards equal, up to rounding)
    gets advantages of 0.

    ``valid`` [B] (bool) marks the rows that have a reward: an unscored row (a judge's NaN
    verdict) gets advantage 0 and is left out of its group's mean and spread, so the group's
    other rows are compared with each other alone; a group with fewer than two scored rows has
    nothing to compare and gets 0 throughout. With every row valid this is the plain formula.

    ``rewards`` are the task rewards alone: the KL penalty is not folded in here (see
    :func:`kl_penalty`), or a group of equal scores would be normalised into pure KL noise.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    if method not in ("rloo", "grpo"):
        raise ValueError(f"unknown group advantage method {method!r}")
    if valid is None:
        r = rewards.view(-1, group_size)
        if method == "rloo":
            baseline = (r.sum(1, keepdim=True) - r) / (group_size - 1)
            return (r - baseline).reshape(-1)
        std = r.std(1, keepdim=True)
        adv = (r - r.mean(1, keepdim=True)) / (std + eps)
        # a group of equal rewards has a spread of rounding noise only: no signal at all
        return torch.where(std < min_std, torch.zeros_like(adv), adv).reshape(-1)
    v = valid.reshape(-1, group_size).to(rewards.dtype)
    r = torch.where(v > 0, rewards.view(-1, group_size), torch.zeros_like(v))  # NaN out
    n = v.sum(1, keepdim=True)
    comparable = n >= 2
    if method == "rloo":
        baseline = ((r * v).sum(1, keepdim=True) - r) / (n - 1).clamp(min=1.0)
        adv = r - baseline
    else:
        mean = (r * v).sum(1, keepdim=True) / n.clamp(min=1.0)
        var = (v * (r - mean) ** 2).sum(1, keepdim=True) / (n - 1).clamp(min=1.0)
        std = var.sqrt()
        adv = (r - mean) / (std + eps)
        comparable = comparable & (std >= min_std)
    return torch.where(comparable, adv * v, torch.zeros_like(adv)).reshape(-1)


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    clipfrac: torch.Tensor
    approx_kl: torch.Tensor


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_ratio: float,
) -> PolicyLoss:
    """PPO's clipped surrogate, averaged over real tokens."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return PolicyLoss(loss, clipfrac, approx_kl)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * max((v - R)^2, (v_clipped - R)^2); returns (loss, clipfrac)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip_value, clip_value)
    a = (values - returns) ** 2
    b = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(a, b), mask)
    with torch.no_grad():
        clipfrac = masked_mean((b > a).float(), mask)
    return loss, clipfrac


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate ``exp(ref - logp) - (ref - logp) - 1`` (Schulman's k3: unbiased,
    never negative), the loss-side KL term of the critic-free methods (GRPO as in DeepSeekMath
    and TRL; RLOO here too). It is differentiated through ``logprobs``: the gradient pulls the
    policy towards the reference wherever they differ, whatever the advantages are.
    """
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0
