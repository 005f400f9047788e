"""RL arithmetic against values computed by hand."""

import math

import pytest
import torch

from sparring.rl.core import (
    compute_gae,
    entropy_from_logits,
    gather_logprobs,
    group_advantages,
    head_logprobs,
    kl_penalty,
    masked_mean,
    masked_whiten,
    policy_loss,
    shaped_rewards,
    turn_returns,
    value_loss,
)


def test_gae_by_hand():
    # one sequence of 3 real tokens and one padding token
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.4, 0.2, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    gamma, lam = 0.9, 0.8
    # deltas: t2 = 1 - 0.2 = 0.8 ; t1 = 0 + 0.9*0.2 - 0.4 = -0.22 ; t0 = 0 + 0.9*0.4 - 0.5 = -0.14
    a2 = 0.8
    a1 = -0.22 + gamma * lam * a2
    a0 = -0.14 + gamma * lam * a1
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    assert adv[0, :3].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert adv[0, 3].item() == 0.0  # padding carries nothing
    assert ret[0, :3].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.2], abs=1e-6)


def test_gae_gamma1_lambda1_is_return_minus_value():
    rewards = torch.tensor([[0.1, 0.2, 0.3]])
    values = torch.tensor([[1.0, 2.0, 3.0]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    assert ret[0].tolist() == pytest.approx([0.6, 0.5, 0.3])
    assert adv[0].tolist() == pytest.approx([-0.4, -1.5, -2.7])


def test_shaped_rewards_put_score_on_last_real_token():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-1.0, -2.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = shaped_rewards(torch.tensor([2.0, 3.0]), logp, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, -1.0], [0.0, 1.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 0.1 + 2.0], [0.0, -0.1 + 3.0, 0.0]]))


def test_group_advantages():
    r = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 4.0])
    rloo = group_advantages(r, 3, "rloo")
    assert rloo.tolist() == pytest.approx([1 - 2.5, 2 - 2.0, 3 - 1.5, 0 - 2.0, 0 - 2.0, 4 - 0.0])
    grpo = group_advantages(r, 3, "grpo", eps=0.0)
    std2 = math.sqrt(((0 - 4 / 3) ** 2 * 2 + (4 - 4 / 3) ** 2) / 2)
    assert grpo.tolist() == pytest.approx(
        [-1.0, 0.0, 1.0, -4 / 3 / std2, -4 / 3 / std2, (4 - 4 / 3) / std2], abs=1e-6
    )
    with pytest.raises(ValueError):
        group_advantages(torch.ones(5), 2, "rloo")


def test_group_advantages_leave_unscored_rows_out():
    """A NaN verdict in a group: its row gets 0 and the group's other rows are compared with
    each other alone (hand values); a group left with one scored row gets 0 throughout; with
    every row valid the masked formula is the plain one."""
    nan = float("nan")
    r = torch.tensor([1.0, nan, 3.0, 0.0, 4.0, nan, 5.0, nan, nan])
    valid = torch.isfinite(r)
    rloo = group_advantages(r, 3, "rloo", valid=valid)
    # group 1: rows 1 and 3 only, each against the other; group 2: 0 vs 4; group 3: alone
    assert rloo.tolist() == pytest.approx([1 - 3, 0.0, 3 - 1, 0 - 4, 4 - 0, 0.0, 0.0, 0.0, 0.0])
    grpo = group_advantages(r, 3, "grpo", eps=0.0, valid=valid)
    s2 = math.sqrt(2.0)  # std of {1, 3} and of {0, 4} / 2 (unbiased): sqrt(2) and 2 sqrt(2)
    assert grpo.tolist() == pytest.approx(
        [-1 / s2, 0.0, 1 / s2, -2 / (2 * s2), 2 / (2 * s2), 0.0, 0.0, 0.0, 0.0]
    )
    full = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 4.0])
    for method in ("rloo", "grpo"):
        plain = group_advantages(full, 3, method)
        masked = group_advantages(full, 3, method, valid=torch.ones(6, dtype=torch.bool))
        assert torch.allclose(plain, masked, atol=1e-6)


def test_policy_loss_clips():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    out = policy_loss(new, old, adv, torch.ones(1, 2), clip_ratio=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 ; token 1: max(0.5, 0.8) = 0.8
    assert out.loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert out.clipfrac.item() == pytest.approx(1.0)
    masked = policy_loss(new, old, adv, torch.tensor([[1, 0]]), clip_ratio=0.2)
    assert masked.loss.item() == pytest.approx(-1.2)


def test_value_loss_clips():
    old = torch.tensor([[1.0, 1.0]])
    new = torch.tensor([[2.0, 1.1]])
    ret = torch.tensor([[3.0, 0.0]])
    loss, frac = value_loss(new, old, ret, torch.ones(1, 2), clip_value=0.5)
    # token 0: unclipped (2-3)^2=1, clipped (1.5-3)^2=2.25 -> 2.25 ; token 1: (1.1)^2=1.21 both
    assert loss.item() == pytest.approx(0.5 * (2.25 + 1.21) / 2)
    assert frac.item() == pytest.approx(0.5)


def test_logprobs_entropy_and_whitening():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    tokens = torch.randint(0, 7, (2, 3))
    ref = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(gather_logprobs(logits, tokens), ref, atol=1e-6)
    p = torch.softmax(logits, -1)
    assert torch.allclose(entropy_from_logits(logits), -(p * p.log()).sum(-1), atol=1e-5)
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = masked_whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)
    assert w[0, 3].item() == 0.0


def test_whitening_leaves_rounding_noise_unscaled():
    x = torch.tensor([[0.5 + 1e-7, 0.5 - 1e-7, 0.5]])
    w = masked_whiten(x, torch.ones(1, 3))
    assert w.abs().max().item() < 1e-6  # centred, not blown up to unit scale


@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_head_logprobs_match_full_log_softmax_values_and_gradients(chunk):
    """Chunked log-probs through the LM head equal log_softmax(head(h) / T)[token], and so do
    their gradients (each chunk is recomputed in the backward pass)."""
    torch.manual_seed(0)
    head = torch.nn.Linear(5, 11, bias=False)
    hidden = torch.randn(2, 4, 5, requires_grad=True)
    tokens = torch.randint(0, 11, (2, 4))
    T = 0.7
    full = torch.log_softmax(head(hidden) / T, -1).gather(-1, tokens[..., None]).squeeze(-1)
    g_full = torch.autograd.grad(full.sum(), (hidden, head.weight))
    mine, ent = head_logprobs(hidden, head, tokens, T, entropy=True, chunk=chunk)
    g_mine = torch.autograd.grad(mine.sum(), (hidden, head.weight))
    assert torch.allclose(mine, full, atol=1e-6)
    for a, b in zip(g_mine, g_full, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    p = torch.softmax(head(hidden) / T, -1)
    assert torch.allclose(ent, -(p * p.log()).sum(-1), atol=1e-5)
    assert not ent.requires_grad  # a statistic unless entropy_grad


def test_kl_penalty_is_k3_by_hand():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    d = -0.5
    assert kl_penalty(logp, ref)[0].tolist() == pytest.approx([math.exp(d) - d - 1, 0.0])
    assert (kl_penalty(torch.randn(3, 4), torch.randn(3, 4)) >= 0).all()


def test_group_advantages_of_equal_scores_are_zero():
    """Every answer of a group scored alike (all refusals): no signal, whatever else differs."""
    r = torch.tensor([0.9, 0.9, 0.9, 0.1, 0.5, 0.9])
    for method in ("rloo", "grpo"):
        adv = group_advantages(r, 3, method)
        assert adv[:3].abs().max().item() < 1e-6, method
        assert adv[3:].abs().max().item() > 0.1, method


def test_turn_returns_by_hand():
    """G_t = r_t + gamma G_{t+1} over the turns played; unplayed turns are 0 and pass nothing
    back (episode 2 stopped after its first turn; its later rewards must not leak in)."""
    r = torch.tensor([[-0.1, -0.1, 0.8], [0.9, 5.0, 5.0], [0.0, 0.2, 0.0]])
    played = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    g = turn_returns(r, played, gamma=0.5)
    expected = torch.tensor(
        [
            [-0.1 + 0.5 * (-0.1 + 0.5 * 0.8), -0.1 + 0.5 * 0.8, 0.8],
            [0.9, 0.0, 0.0],
            [0.0 + 0.5 * 0.2, 0.2, 0.0],
        ]
    )
    assert torch.allclose(g, expected)
    # gamma 1: every played turn is credited with the rest of the episode's rewards
    assert torch.allclose(turn_returns(r, played, 1.0)[0], torch.tensor([0.6, 0.7, 0.8]))
    # one turn: the return is the reward (today's single-turn game)
    assert torch.equal(turn_returns(r[:, :1], played[:, :1], 0.9), r[:, :1])
    with pytest.raises(ValueError, match=r"need \[E, T\]"):
        turn_returns(r, played[:, :2], 1.0)
