"""The modules a player trains: the policy with its value head in one forward pass, and the
hook that records log-probs while ``generate`` samples."""

from __future__ import annotations

import math

import torch
from torch import nn

from sparring.rl.core import head_logprobs


class ValueHead(nn.Module):
    """A scalar value per position, read from the policy's last hidden state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.summary.weight, std=1.0 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


class PolicyWithValue(nn.Module):
    """Policy LM plus optional value head, evaluated in one forward pass.

    ``forward`` returns the log-probs of the response tokens (and their values and entropy): the
    LM head runs only over the response positions, a chunk at a time (see
    :func:`~sparring.rl.core.head_logprobs`), inside this module's forward so that DDP, FSDP and
    DeepSpeed see every parameter used there.
    """

    def __init__(self, policy: nn.Module, value_head: ValueHead | None):
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        # not registered as submodules: they are parts of ``policy``
        self._parts = split_lm(policy)

    def forward(
        self,
        input_ids,
        attention_mask,
        position_ids,
        response_ids,
        temperature: float = 1.0,
        entropy: bool = False,
        entropy_grad: bool = False,
    ):
        n = response_ids.shape[1]
        hidden, head, hidden_for_value = response_features(
            self.policy,
            self._parts,
            input_ids,
            attention_mask,
            position_ids,
            n,
            need_hidden=self.value_head is not None,
        )
        values = self.value_head(hidden_for_value) if self.value_head is not None else None
        logprobs, ent = head_logprobs(
            hidden, head, response_ids, temperature, entropy=entropy, entropy_grad=entropy_grad
        )
        return logprobs, values, ent


def split_lm(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(trunk, LM head) of a causal LM when the head alone turns the trunk's last hidden state
    into the model's logits, checked on a probe input; None for models that post-process their
    logits (soft-capping, scaling) or are laid out otherwise: those compute full logits."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(lm, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(text, attr, None) not in (None, 1, 1.0):
            return None
    prefix = getattr(lm, "base_model_prefix", "")
    trunk = getattr(lm, prefix, None) if prefix else None
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if not isinstance(trunk, nn.Module) or not isinstance(head, nn.Linear) or trunk is lm:
        return None
    was_training = lm.training
    lm.eval()
    try:
        with torch.no_grad():
            ids = torch.arange(min(6, head.weight.shape[0]), device=head.weight.device)[None]
            full = model(input_ids=ids, use_cache=False).logits[:, -1].float()
            mine = head(trunk(input_ids=ids, use_cache=False).last_hidden_state[:, -1]).float()
    except Exception:  # any layout this probe does not understand: the full-logits path
        return None
    finally:
        lm.train(was_training)
    tol = 1e-3 * max(1.0, float(full.abs().max()))
    return (trunk, head) if torch.allclose(full, mine, rtol=1e-3, atol=tol) else None


def response_features(
    model: nn.Module,
    parts: tuple[nn.Module, nn.Module] | None,
    input_ids,
    attention_mask,
    position_ids,
    n: int,
    *,
    need_hidden: bool = False,
):
    """What predicts the last ``n`` tokens: (features [B, n, *], the head that turns them into
    logits, the last hidden states [B, n, H] or None).

    With a split model the features are the hidden states and the head is the LM head; otherwise
    they are the logits of those positions and the head is the identity.
    """
    if parts is not None:
        trunk, head = parts
        out = trunk(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        )
        hidden = out.last_hidden_state[:, -(n + 1) : -1]
        return hidden, head, hidden
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=n + 1,
        output_hidden_states=need_hidden,
        use_cache=False,
    )
    hidden = out.hidden_states[-1][:, -(n + 1) : -1] if need_hidden else None
    return out.logits[:, -(n + 1) : -1], nn.Identity(), hidden


class LogprobRecorder:
    """Forward hook that records log-probs of sampled tokens while ``generate`` runs.

    Each decoding forward sees the token sampled after the previous one as its input, so the
    previous step's next-token logits are gathered there; the last token is gathered by
    :meth:`finish`. Only one row of logits per sequence is held at a time (no [B, R, vocab]).
    The logits are the model's raw output divided by the temperature, as in the training forward.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.prev: torch.Tensor | None = None
        self.picked: list[torch.Tensor] = []

    def _take(self, tokens: torch.Tensor) -> None:
        logits = self.prev
        self.picked.append(
            logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        )

    def __call__(self, module, args, kwargs, output):
        if self.prev is not None:
            ids = kwargs.get("input_ids")
            if ids is None and args:
                ids = args[0]
            self._take(ids[:, -1])
        logits = output.logits if hasattr(output, "logits") else output[0]
        self.prev = logits[:, -1].detach().float() / self.temperature

    def finish(self, response_ids: torch.Tensor) -> torch.Tensor | None:
        if self.prev is not None:
            self._take(response_ids[:, len(self.picked)])
        if len(self.picked) != response_ids.shape[1]:
            return None  # the hook did not see every step (unusual generate path): fall back
        return torch.stack(self.picked, dim=1)
