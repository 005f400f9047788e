"""Snapshots of a player's trained weights: what an opponent pool keeps, and how a past snapshot
plays for one step while the player's own weights wait untouched.

A snapshot holds only the weights the player trains: with LoRA the adapter (a few MB for a
small model), without LoRA every weight of the policy (the model's full size, in the dtype it
trains in). The value head is left out: an opponent only generates. Snapshots live in host
memory and are written as safetensors in each checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sparring.errors import CheckpointError, ConfigError

State = dict[str, torch.Tensor]


def _trained(player) -> dict[str, torch.nn.Parameter]:
    params = {n: p for n, p in player.unwrapped.policy.named_parameters() if p.requires_grad}
    if not params:
        raise ConfigError(f"{player.role}: an opponent pool needs a player that trains")
    if any(hasattr(p, "ds_id") and p.numel() == 0 for p in params.values()):
        raise ConfigError(
            "game.pool: the weights are partitioned over the processes (DeepSpeed ZeRO-3); "
            "opponent pools need each process to hold the whole trained weights (ZeRO-2, DDP)"
        )
    return params


def take(player) -> State:
    """A host-memory copy of the weights ``player`` trains."""
    return {n: p.detach().to("cpu", copy=True) for n, p in _trained(player).items()}


@contextlib.contextmanager
def playing_as(player, state: State | None) -> Iterator[None]:
    """Inside the block ``player`` generates with ``state``'s weights; after it the player's own
    weights are back bit for bit (copied aside, not recomputed). ``None``: the player as it is."""
    if state is None:
        yield
        return
    params = _trained(player)
    missing = sorted(set(params) ^ set(state))
    if missing:
        raise CheckpointError(
            f"{player.role}: a snapshot does not match the player's trained weights "
            f"({len(missing)} names differ, e.g. {missing[0]!r})"
        )
    own = {n: p.detach().clone() for n, p in params.items()}
    try:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n])
        yield
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(own[n])


def average(states: Sequence[State]) -> State:
    """The element-wise mean of full-weight snapshots. LoRA snapshots are averaged by
    :func:`average_lora_deltas` instead: the mean of the A and B factors is not the mean of the
    weight updates they make."""
    if not states:
        raise ValueError("no snapshots to average")
    return {
        n: torch.stack([s[n].float() for s in states]).mean(0).to(states[0][n].dtype)
        for n in states[0]
    }


def average_lora_deltas(states: Sequence[State], scaling: dict[str, float]) -> State:
    """The mean weight update ``scaling * B @ A`` of LoRA snapshots, per adapted module, keyed
    by the module's path in the peft model (``...q_proj``); ``scaling`` is each module's LoRA
    scale (``alpha / r``)."""
    if not states:
        raise ValueError("no snapshots to average")
    out: State = {}
    for name in states[0]:
        if ".lora_A." not in name:
            continue
        module = name.split(".lora_A.")[0]
        b_name = name.replace(".lora_A.", ".lora_B.")
        deltas = [scaling[module] * (s[b_name].float() @ s[name].float()) for s in states]
        out[module] = torch.stack(deltas).mean(0)
    return out


def export_average(player, states: Sequence[State], directory: Path) -> None:
    """Write ``player`` as the average of ``states`` (a plain Hugging Face folder, like
    :meth:`Player.export`): full weights averaged element-wise; with LoRA, the base model plus
    the mean of the snapshots' weight updates, merged."""
    if player.cfg.lora is None:
        with playing_as(player, average(states)):
            player.export(directory)
        return
    policy = player.unwrapped.policy
    scaling = {
        name: float(m.scaling["default"])
        for name, m in policy.named_modules()
        if isinstance(getattr(m, "scaling", None), dict) and "default" in m.scaling
    }
    deltas = average_lora_deltas(states, scaling)
    base = player.load_base("float32")  # the updates are added in float32, then cast
    with torch.no_grad():
        for module, delta in deltas.items():
            # peft's path is base_model.model.<the base model's own path>
            target = base.get_submodule(module.removeprefix("base_model.model."))
            if target.weight.shape != delta.shape:  # GPT-2's Conv1D stores (in, out)
                delta = delta.T
            target.weight += delta.to(target.weight.dtype)
    if player.cfg.dtype != "float32":
        base.to(getattr(torch, player.cfg.dtype))
    base.save_pretrained(directory, safe_serialization=True)
    player.tokenizer.save_pretrained(directory)


def save(state: State, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))


def load(path: Path) -> State:
    try:
        return load_file(str(path))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the pool snapshot {path}: {exc}") from None
