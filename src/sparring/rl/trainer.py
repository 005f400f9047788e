"""One RL update of a player from a batch of experience (PPO or critic-free RLOO / GRPO).

The same function trains the attacker and the defender: everything that differs between them
lives in the player's configuration. The trainer knows tensors and the :class:`Learner`
protocol, not the player class: :class:`sparring.players.player.Player` is one learner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from accelerate.utils import DistributedType

from sparring.rl.batch import Generation, slice_generation
from sparring.rl.core import (
    compute_gae,
    group_advantages,
    kl_penalty,
    masked_mean,
    masked_whiten,
    policy_loss,
    shaped_rewards,
    value_loss,
)
from sparring.runtime import any_rank


class Learner(Protocol):
    """What the update needs of a player: its RL settings (``cfg.rl``), its engine and
    optimiser, and scored forward passes over a :class:`~sparring.rl.batch.Generation`."""

    cfg: Any  # a PlayerConfig: ``cfg.rl`` is read
    accelerator: Any  # accelerate.Accelerator
    module: torch.nn.Module  # the prepared (wrapped) policy-with-value module
    optimizer: Any
    scheduler: Any

    @property
    def has_value(self) -> bool: ...

    def logprobs_and_values(
        self, gen: Generation, grad: bool = False, entropy: bool = False, entropy_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]: ...

    def reference_logprobs(self, gen: Generation) -> torch.Tensor: ...


@dataclass
class Experience:
    """What a rollout hands to the update: the samples and their scalar scores."""

    gen: Generation
    scores: torch.Tensor  # [B] task reward per sample (judge, novelty), before the KL penalty
    logprobs: torch.Tensor  # [B, R] under the policy that sampled
    ref_logprobs: torch.Tensor  # [B, R]
    values: torch.Tensor | None  # [B, R] (PPO only)
    group_size: int = 1
    # [B] bool, False for rows without a reward (NaN verdicts): their response mask is zero
    # (no loss, no KL) and they are left out of their group's baseline; None: all scored
    valid: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.scores.shape[0]


def make_experience(
    player: Learner, gen: Generation, scores: torch.Tensor, group_size: int
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
    """One epoch of one forward pass: the update's forward is the first and only one on this
    batch (one minibatch, one micro-batch)."""
    one_minibatch = min(rl.minibatch_size or rows, rows) == rows
    one_micro = min(rl.micro_batch_size or rows, rows) == rows
    return rl.ppo_epochs == 1 and one_minibatch and one_micro


def advantages_and_returns(
    player: Learner, exp: Experience
) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """Per-token advantages (and PPO returns).

    PPO folds the per-token KL penalty into the rewards (GAE then assigns it to tokens). The
    critic-free methods take their advantages from the task scores alone and pay the KL as a
    loss term (:func:`~sparring.rl.core.kl_penalty`): folded into the sequence reward before
    the group normalisation, it would turn a group of equal scores (every answer a refusal)
    into unit-size advantages made of KL noise, whatever ``kl_coef`` is.
    """
    rl = player.cfg.rl
    mask = exp.gen.response_mask
    scores = exp.scores
    if rl.reward_clip is not None:
        scores = scores.clamp(-rl.reward_clip, rl.reward_clip)
    kl_coef = rl.kl_coef if rl.algorithm == "ppo" else 0.0
    rewards, kl = shaped_rewards(scores, exp.logprobs, exp.ref_logprobs, mask, kl_coef)
    stats = {"kl": kl.sum(-1).mean().item()}
    if rl.algorithm == "ppo":
        if rl.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        adv, returns = compute_gae(rewards, exp.values, mask, rl.gamma, rl.lam)
        stats["value_mean"] = masked_mean(exp.values, mask).item()
        stats["return_mean"] = masked_mean(returns, mask).item()
    else:
        adv = group_advantages(scores, exp.group_size, rl.algorithm, valid=exp.valid)
        adv = adv.unsqueeze(-1).expand_as(rewards) * mask
        returns = None
    if rl.whiten_advantages and (rl.algorithm == "ppo" or rl.algorithm == "rloo"):
        adv = masked_whiten(adv, mask)
    return adv, returns, stats


def optimizer_steps(rl, rows: int, accumulation: int = 1) -> list[list[list[torch.Tensor]]]:
    """One epoch's rows in a random order, as optimiser steps -> minibatches -> micro-batches.

    ``minibatch_size`` rows make a minibatch; ``accumulation`` minibatches make one optimiser
    step (accelerate's ``gradient_accumulation_steps``; the update's last step takes whatever
    is left, so no gradient carries over into the next update); each minibatch runs as
    forward/backward passes of ``micro_batch_size`` rows.
    """
    order = torch.randperm(rows)
    mb = min(rl.minibatch_size or rows, rows)
    micro = min(rl.micro_batch_size or mb, mb)
    minibatches = [order[s : s + mb] for s in range(0, rows, mb)]
    return [
        [
            [m[s : s + micro] for s in range(0, len(m), micro)]
            for m in minibatches[g : g + accumulation]
        ]
        for g in range(0, len(minibatches), accumulation)
    ]


def micro_weights(mask: torch.Tensor, step: list[list[torch.Tensor]]) -> list[float]:
    """Each micro-batch's weight in its optimiser step: its share of its minibatch's response
    tokens, over the number of minibatches in the step. The weighted sum of the micro-batches'
    token-mean losses is then the mean over the step's minibatches of each one's token-mean
    loss: the gradient does not depend on how a minibatch is cut into micro-batches."""
    out = []
    for minibatch in step:
        tokens = [float(mask[m.to(mask.device)].sum()) for m in minibatch]
        total = sum(tokens) or 1.0
        out.extend(t / total / len(step) for t in tokens)
    return out


def update(player: Learner, exp: Experience) -> dict[str, float]:
    """PPO-style epochs of optimiser steps over the batch. Returns averaged statistics.

    Each optimiser step accumulates the gradients of its micro-batches (weighted by
    :func:`micro_weights`); gradients are synchronised across processes, and the optimiser and
    the learning-rate schedule step, once per optimiser step, on this player's own accelerator.
    A non-finite loss or gradient skips that optimiser step (``stats['nonfinite'] > 0``)
    instead of corrupting the weights, and discards every gradient the step had accumulated. An
    fp16 overflow is not a fault: the loss scaler skips the step and lowers its scale, as
    ``GradScaler`` intends, and it is counted apart (``stats['overflow']``).
    """
    rl = player.cfg.rl
    acc = player.accelerator
    n = len(exp)
    accumulation = acc.gradient_accumulation_steps
    # values deferred to the training forward (fast path, single pass): advantages come after it
    deferred = player.has_value and exp.values is None
    if deferred and not _single_pass(rl, n):
        raise ValueError(
            "experience without values needs a single-pass update "
            "(ppo_epochs 1, one minibatch, one micro-batch)"
        )
    adv = returns = None
    stats: dict[str, float] = {}
    if not deferred:
        adv, returns, stats = advantages_and_returns(player, exp)
    device = exp.gen.response_ids.device
    sums: dict[str, float] = {}
    count = steps = 0
    grad_norms: list[float] = []
    nonfinite = overflow = 0
    player.module.train()
    try:
        for _ in range(rl.ppo_epochs):
            for step in optimizer_steps(rl, n, accumulation):
                weights = micro_weights(exp.gen.response_mask, step)
                micro = [m.to(device) for minibatch in step for m in minibatch]
                skipped = False
                for j, idx in enumerate(micro):
                    sync = j == len(micro) - 1
                    acc.sync_gradients = sync  # accelerate's optimiser and DeepSpeed read it
                    with contextlib.nullcontext() if sync else acc.no_sync(player.module):
                        sub = slice_generation(exp.gen, idx)
                        logprobs, values, entropy = player.logprobs_and_values(
                            sub, grad=True, entropy=bool(rl.ent_coef), entropy_grad=True
                        )
                        if deferred:
                            exp.values = torch.empty_like(values)
                            exp.values[idx] = values.detach()
                            adv, returns, stats = advantages_and_returns(player, exp)
                        loss, parts = _loss(
                            rl, exp, idx, sub.response_mask, logprobs, values, entropy, adv, returns
                        )
                        if any_rank(acc, not math.isfinite(parts["loss/total"])):
                            skipped = True
                            break
                        # accelerate (and DeepSpeed's engine) divide by the accumulation steps;
                        # the weights already average over the step's minibatches
                        acc.backward(loss * (weights[j] * accumulation))
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
                # the step ends here whatever happened: accelerate's zero_grad (and DeepSpeed's
                # boundary) act only on a synchronised step; a break above left it unsynced
                acc.sync_gradients = True
                if skipped:
                    nonfinite += 1
                    _discard_gradients(player)
                    continue
                outcome = _optimizer_step(player, rl.max_grad_norm, grad_norms)
                if outcome == "nonfinite":
                    nonfinite += 1
                elif outcome == "overflow":
                    overflow += 1
                else:
                    player.scheduler.step()
                    steps += 1
                if outcome == "stepped":
                    player.optimizer.zero_grad(set_to_none=True)
                else:
                    _discard_gradients(player)
    finally:
        acc.sync_gradients = True
    stats.update({k: v / max(count, 1) for k, v in sums.items()})
    if grad_norms:
        stats["grad_norm"] = sum(grad_norms) / len(grad_norms)
    stats["lr"] = player.scheduler.get_last_lr()[0]
    stats["optimizer_steps"] = float(steps)
    stats["nonfinite"] = float(nonfinite)
    stats["overflow"] = float(overflow)
    player.module.eval()  # rollouts and scoring run in eval mode
    return stats


def _optimizer_step(player: Learner, max_grad_norm: float | None, grad_norms: list) -> str:
    """Clip and step, once the step's gradients are accumulated and synchronised: "stepped",
    "overflow" (fp16: the loss scaler found inf/NaN gradients, skipped the step and backed its
    scale off) or "nonfinite" (a non-finite gradient without a loss scaler: skipped).

    With a loss scaler the optimiser's ``step`` is called even when the clipped norm is
    infinite: ``GradScaler.step`` skips the update itself, and only its ``update`` lowers the
    scale and re-arms ``unscale_`` for the next step (skipping the call left the scale where it
    overflowed and made the next clip raise "unscale_() has already been called").
    """
    acc = player.accelerator
    scaler = getattr(acc, "scaler", None)
    if max_grad_norm is not None:
        gn = acc.clip_grad_norm_(player.module.parameters(), max_norm=max_grad_norm)
        if gn is not None:  # None under DeepSpeed before its first step
            grad_norms.append(float(gn))
            if not math.isfinite(grad_norms[-1]):
                grad_norms.pop()  # an overflow's norm says nothing of the update
                if scaler is None and acc.distributed_type != DistributedType.DEEPSPEED:
                    return "nonfinite"  # DeepSpeed's engine judges its own overflow
    player.optimizer.step()
    if getattr(player.optimizer, "step_was_skipped", False):
        return "overflow"
    return "stepped"


def _discard_gradients(player: Learner) -> None:
    """Drop every gradient a skipped step accumulated, whatever the engine: accelerate's
    wrapper clears only on a synchronised step and DeepSpeed's never (its engine clears after
    its own step, which a skipped step never reaches), so the ZeRO optimiser's buffers and the
    parameters' ``.grad`` are cleared directly. The skipped step's earlier micro-batches must
    not leak into the next update."""
    player.optimizer.zero_grad(set_to_none=True)
    inner = getattr(player.module, "optimizer", None)  # a DeepSpeed engine's ZeRO optimiser
    if inner is not None and hasattr(inner, "zero_grad"):
        inner.zero_grad()
    for param in player.module.parameters():
        param.grad = None


def _loss(rl, exp, idx, mask, logprobs, values, entropy, adv, returns):
    """The loss of one micro-batch (token means over its rows) and its statistics."""
    pl = policy_loss(logprobs, exp.logprobs[idx], adv[idx], mask, rl.clip_ratio)
    loss = pl.loss
    parts = {
        "loss/policy": pl.loss.item(),
        "clipfrac": pl.clipfrac.item(),
        "approx_kl": pl.approx_kl.item(),
    }
    if rl.algorithm != "ppo" and rl.kl_coef:
        kl = masked_mean(kl_penalty(logprobs, exp.ref_logprobs[idx]), mask)
        loss = loss + rl.kl_coef * kl
        parts["loss/kl"] = kl.item()
    if values is not None:
        vl, vclip = value_loss(values, exp.values[idx], returns[idx], mask, rl.clip_value)
        loss = loss + rl.vf_coef * vl
        parts.update({"loss/value": vl.item(), "value_clipfrac": vclip.item()})
    if entropy is not None:  # only computed when it is paid for (ent_coef > 0)
        ent = masked_mean(entropy, mask)
        loss = loss - rl.ent_coef * ent
        parts["entropy"] = ent.item()
    parts["loss/total"] = loss.item()
    return loss, parts


def checked_update(
    learner: Learner, gen: Generation, scores, group: int, timer, *, what: str, live=None
) -> tuple[dict[str, float], str | None]:
    """The learner's update from its generation and rewards, or the reason it was skipped
    (too few rows with a finite reward, non-finite log-probs, loss or gradient: decided alike on
    every rank, since a backward pass one rank skips would hang the others' all-reduce).

    A row whose reward is NaN (an LLM judge's unreadable verdict) is masked, not fatal: it
    carries no advantage and no loss and is counted (``rows/unscored``); the update is skipped
    only when fewer than ``rl.min_scored_fraction`` of the rows are scored. ``live`` [B] (bool)
    marks the rows anyone played: the others (a stopped dialogue's placeholder turns) are
    masked the same way but are not counted as unscored. ``what`` names the update in the
    reason; ``timer(name)`` times the phases."""
    acc = learner.accelerator
    scores = np.asarray(scores, dtype=np.float64)
    live = np.ones(len(scores), dtype=bool) if live is None else np.asarray(live, dtype=bool)
    scored = np.isfinite(scores) & live
    unscored = live & ~scored
    floor = learner.cfg.rl.min_scored_fraction
    if any_rank(acc, scored.sum() < floor * live.sum()):
        return {"rows/unscored": float(unscored.sum())}, (
            f"only {int(scored.sum())} of {int(live.sum())} rows have a finite reward in {what} "
            f"(rl.min_scored_fraction is {floor})"
        )
    valid = None
    if not scored.all():
        gen = unscored_rows_masked(gen, scored)
        valid = torch.as_tensor(scored, device=gen.response_mask.device)
        scores = np.where(scored, scores, 0.0)  # NaN * 0 is NaN: the masked rows read 0
    with timer("experience"):
        exp = make_experience(learner, gen, torch.as_tensor(scores, dtype=torch.float32), group)
    exp.valid = valid
    finite = bool(torch.isfinite(exp.logprobs).all() and torch.isfinite(exp.ref_logprobs).all())
    if any_rank(acc, not finite):
        return {}, f"non-finite log-probs in {what}"
    with timer("update"):
        stats = update(learner, exp)
    stats["rows/unscored"] = float(unscored.sum())
    if stats.get("nonfinite"):
        return stats, f"non-finite loss or gradient in {what}"
    return stats, None


def unscored_rows_masked(gen: Generation, scored: np.ndarray) -> Generation:
    """``gen`` with the response mask of unscored rows set to zero: their tokens carry no
    advantage, pay no KL and weigh nothing in the update (:func:`micro_weights`)."""
    keep = torch.as_tensor(scored, device=gen.response_mask.device).to(gen.response_mask.dtype)
    return dataclasses.replace(gen, response_mask=gen.response_mask * keep.unsqueeze(-1))


def updates_per_stage_step(player_cfg, batch_rows: int, accumulation: int = 1) -> int:
    """Optimiser steps one stage step makes (for learning-rate schedules): the same count on
    every process, since each process steps once per synchronised step."""
    rl = player_cfg.rl
    mb = min(rl.minibatch_size or batch_rows, batch_rows)
    return rl.ppo_epochs * math.ceil(math.ceil(batch_rows / mb) / accumulation)
