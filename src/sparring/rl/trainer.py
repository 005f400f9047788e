"""One RL update of a player from a batch of experience (PPO or critic-free RLOO / GRPO).

The same function trains the attacker and the defender: everything that differs between them
lives in the player's configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparring.players.player import Generation, Player
from sparring.rl.core import (
    compute_gae,
    group_advantages,
    masked_mean,
    masked_whiten,
    policy_loss,
    shaped_rewards,
    value_loss,
)


@dataclass
class Experience:
    """What a rollout hands to the update: the samples and their scalar scores."""

    gen: Generation
    scores: torch.Tensor  # [B] task reward per sample (judge, novelty), before the KL penalty
    logprobs: torch.Tensor  # [B, R] under the policy that sampled
    ref_logprobs: torch.Tensor  # [B, R]
    values: torch.Tensor | None  # [B, R] (PPO only)
    group_size: int = 1

    def __len__(self) -> int:
        return self.scores.shape[0]


def make_experience(
    player: Player, gen: Generation, scores: torch.Tensor, group_size: int
) -> Experience:
    """Score a generation under the policy (log-probs, values) and the reference, in no-grad passes.

    On the player's fast path the log-probs recorded during generation are used instead of a
    second policy forward, and PPO values are left to the training forward (``values=None``)
    when the update makes a single pass over the batch.
    """
    if getattr(player, "fast", False) and gen.logprobs is not None:
        logprobs, values = gen.logprobs, None
        if player.has_value and not _single_pass(player.cfg.rl, len(scores)):
            _, values, _ = player.logprobs_and_values(gen)
    else:
        logprobs, values, _ = player.logprobs_and_values(gen)
    ref = player.reference_logprobs(gen)
    return Experience(
        gen, scores.to(logprobs.device, torch.float32), logprobs, ref, values, group_size
    )


def _single_pass(rl, rows: int) -> bool:
    """One epoch of one minibatch: the update's forward is the first and only one on this batch."""
    return rl.ppo_epochs == 1 and min(rl.minibatch_size or rows, rows) == rows


def advantages_and_returns(
    player: Player, exp: Experience
) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """Per-token advantages (and PPO returns) with the KL penalty folded into the rewards."""
    rl = player.cfg.rl
    mask = exp.gen.response_mask
    scores = exp.scores
    if rl.reward_clip is not None:
        scores = scores.clamp(-rl.reward_clip, rl.reward_clip)
    rewards, kl = shaped_rewards(scores, exp.logprobs, exp.ref_logprobs, mask, rl.kl_coef)
    stats = {"kl": kl.sum(-1).mean().item()}
    if rl.algorithm == "ppo":
        if rl.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        adv, returns = compute_gae(rewards, exp.values, mask, rl.gamma, rl.lam)
        stats["value_mean"] = masked_mean(exp.values, mask).item()
        stats["return_mean"] = masked_mean(returns, mask).item()
    else:
        seq_rewards = rewards.sum(-1)
        adv = (
            group_advantages(seq_rewards, exp.group_size, rl.algorithm)
            .unsqueeze(-1)
            .expand_as(rewards)
        )
        adv = adv * mask
        returns = None
    if rl.whiten_advantages and (rl.algorithm == "ppo" or rl.algorithm == "rloo"):
        adv = masked_whiten(adv, mask)
    return adv, returns, stats


def update(player: Player, exp: Experience) -> dict[str, float]:
    """PPO-style epochs of minibatch gradient steps. Returns averaged statistics.

    A non-finite loss skips that gradient step (``stats['nonfinite'] > 0``) instead of
    corrupting the weights.
    """
    rl = player.cfg.rl
    acc = player.accelerator
    n = len(exp)
    mb = min(rl.minibatch_size or n, n)
    # values deferred to the training forward (fast path, single pass): advantages come after it
    deferred = player.has_value and exp.values is None
    if deferred and not _single_pass(rl, n):
        raise ValueError(
            "experience without values needs a single-pass update (ppo_epochs 1, one minibatch)"
        )
    if not deferred:
        adv, returns, stats = advantages_and_returns(player, exp)
    sums: dict[str, float] = {}
    count = 0
    nonfinite = 0
    player.module.train()
    for _ in range(rl.ppo_epochs):
        order = torch.randperm(n)
        for start in range(0, n, mb):
            idx = order[start : start + mb].to(exp.gen.response_ids.device)
            sub = _slice(exp.gen, idx)
            mask = sub.response_mask
            with acc.accumulate(player.module):
                logprobs, values, entropy = player.logprobs_and_values(
                    sub, grad=True, entropy_grad=bool(rl.ent_coef)
                )
                if deferred:
                    old_values = torch.empty_like(values)
                    old_values[idx] = values.detach()
                    exp.values = old_values
                    adv, returns, stats = advantages_and_returns(player, exp)
                pl = policy_loss(logprobs, exp.logprobs[idx], adv[idx], mask, rl.clip_ratio)
                loss = pl.loss
                parts = {
                    "loss/policy": pl.loss.item(),
                    "clipfrac": pl.clipfrac.item(),
                    "approx_kl": pl.approx_kl.item(),
                }
                if values is not None:
                    vl, vclip = value_loss(
                        values, exp.values[idx], returns[idx], mask, rl.clip_value
                    )
                    loss = loss + rl.vf_coef * vl
                    parts.update({"loss/value": vl.item(), "value_clipfrac": vclip.item()})
                ent = masked_mean(entropy, mask)
                if rl.ent_coef:
                    loss = loss - rl.ent_coef * ent
                parts["entropy"] = ent.item()
                parts["loss/total"] = loss.item()
                if any_rank(acc, not math.isfinite(parts["loss/total"])):
                    nonfinite += 1
                    player.optimizer.zero_grad(set_to_none=True)
                    continue
                acc.backward(loss)
                if acc.sync_gradients and rl.max_grad_norm is not None:
                    gn = acc.clip_grad_norm_(player.module.parameters(), rl.max_grad_norm)
                    parts["grad_norm"] = float(gn)
                    if not math.isfinite(parts["grad_norm"]):
                        nonfinite += 1
                        player.optimizer.zero_grad(set_to_none=True)
                        continue
                player.optimizer.step()
                player.scheduler.step()
                player.optimizer.zero_grad(set_to_none=True)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    stats.update({k: v / max(count, 1) for k, v in sums.items()})
    stats["lr"] = player.scheduler.get_last_lr()[0]
    stats["nonfinite"] = float(nonfinite)
    player.module.eval()  # rollouts and scoring run in eval mode
    return stats


def any_rank(acc, flag: bool) -> bool:
    """True on every process when ``flag`` is true on any: with several processes, a decision to
    skip a backward pass must be the same everywhere, or the gradient all-reduce would hang."""
    if acc.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=acc.device)
    return bool(acc.reduce(t, reduction="sum").item() > 0)


def _slice(gen: Generation, idx: torch.Tensor) -> Generation:
    """Rows ``idx`` of a generation."""
    q_ids, q_mask = gen.query_ids[idx], gen.query_mask[idx]
    r_ids, r_mask = gen.response_ids[idx], gen.response_mask[idx]
    return Generation(
        q_ids,
        q_mask,
        r_ids,
        r_mask,
        [gen.texts[i] for i in idx.tolist()],
        [gen.inputs[i] for i in idx.tolist()],
        gen.logprobs[idx] if gen.logprobs is not None else None,
    )


def updates_per_stage_step(player_cfg, batch_rows: int) -> int:
    """Optimiser steps one stage step makes (for learning-rate schedules)."""
    rl = player_cfg.rl
    mb = min(rl.minibatch_size or batch_rows, batch_rows)
    return rl.ppo_epochs * math.ceil(batch_rows / mb)
