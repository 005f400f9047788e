"""Frozen players for evaluation: which weights a run left behind, loaded without optimisers.

A player's weights are looked up in this order: ``checkpoints/step-N/<role>`` when a checkpoint
is asked for, else ``final/<role>`` (a plain Hugging Face folder, LoRA merged), else the latest
checkpoint holding the role, else the initial model (``<role>.model`` of the run config: a
player the run did not train, or a run that has not trained yet). ``step-0`` names the initial
model explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparring import runs
from sparring.config import PlayerConfig
from sparring.errors import CheckpointError
from sparring.evaluation.metrics import sequence_kl


@dataclass(frozen=True)
class Source:
    """Where a player's weights come from: kind is checkpoint, final, initial, model (a folder)
    or endpoint (``openai:MODEL@URL``)."""

    kind: str
    path: str | None
    label: str  # "step-N", "final", "initial" or a model folder name

    def as_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "label": self.label}


def parse_checkpoint(name: str | None) -> int | None:
    if name is None or name == "final":
        return None
    m = runs.CHECKPOINT_RE.match(name)
    if not m:
        raise CheckpointError(f"--checkpoint {name!r}: expected 'step-N' or 'final'")
    return int(m.group(1))


def player_source(run_dir: Path, role: str, checkpoint: str | None = None) -> Source:
    """The weights to evaluate for ``role`` (see the module docstring for the order)."""
    step = parse_checkpoint(checkpoint)
    if step == 0:
        return Source("initial", None, "step-0")
    if step is not None:
        found = dict(runs.checkpoints(run_dir))
        if step not in found:
            have = ", ".join(f"step-{s}" for s in found) or "none"
            raise CheckpointError(f"{run_dir}: no complete checkpoint step-{step} (have: {have})")
        folder = found[step] / role
        if (folder / "policy").is_dir():
            return Source("checkpoint", str(folder), f"step-{step}")
        return Source("initial", None, f"step-{step}")  # this role did not train in the run
    final = run_dir / "final" / role
    if (final / "config.json").is_file() or (final / "mixture.json").is_file():
        return Source("final", str(final), "final")
    for s, folder in reversed(runs.checkpoints(run_dir)):
        if (folder / role / "policy").is_dir():
            return Source("checkpoint", str(folder / role), f"step-{s}")
    return Source("initial", None, "initial")


def target_source(target: str, taken=()) -> Source:
    """A frozen target named on the command line: a model folder, a served model
    ``openai:MODEL@URL`` (no key), or a target file (``target.yaml``: a served model with its
    key variable, system prompt, headers and limits; :func:`target_config`); its label is the
    folder's or model's name, made unique among ``taken``."""
    from sparring.endpoints.spec import is_target_file, parse_target

    if is_target_file(target):
        kind, name = "target", target_config(target).model
    else:
        spec = parse_target(target)
        kind = "endpoint" if spec is not None else "model"
        name = spec.model if spec is not None else Path(target).name or target
    label, i = name, 2
    while label in taken or label == "defender":
        label, i = f"{name}-{i}", i + 1
    return Source(kind, target, label)


def target_config(path: str | Path, defaults=None):
    """The ``type: openai`` defender config a target file describes
    (:func:`sparring.endpoints.spec.read_target_file`); the generation settings not given there
    are ``defaults``' (the run's defender). Errors name the file, the line and the field."""
    from pydantic import ValidationError

    from sparring.config import DefenderConfig
    from sparring.config_load import format_validation_error
    from sparring.endpoints.spec import read_target_file
    from sparring.errors import ConfigError

    data = read_target_file(path)
    if defaults is not None and "generation" not in data:
        data["generation"] = defaults.generation.model_dump()
    try:
        return DefenderConfig(**data)
    except ValidationError as exc:
        text = Path(path).read_text(encoding="utf-8")
        raise ConfigError(
            format_validation_error(exc, DefenderConfig, f"--against {path}", text)
        ) from None


def role_sources(run_dir: Path, role: str) -> list[Source]:
    """step-0 (initial) plus every saved checkpoint that holds ``role``, oldest first."""
    out = [Source("initial", None, "step-0")]
    for s, folder in runs.checkpoints(run_dir):
        if (folder / role / "policy").is_dir():
            out.append(Source("checkpoint", str(folder / role), f"step-{s}"))
    return out


def load_player(
    role: str, cfg: PlayerConfig, accelerator, source: Source, *, with_reference: bool = False
):
    """A frozen :class:`~sparring.players.player.Player` (no value head, no optimiser).

    ``with_reference`` also loads the initial model as the KL reference when the weights are
    not the initial model (a LoRA checkpoint uses its adapter-disabled base instead).
    """
    from sparring.players.endpoint import EndpointPlayer
    from sparring.players.loading import load_causal_lm
    from sparring.players.mixture import MixturePlayer, is_mixture
    from sparring.players.player import Player

    if source.kind == "target":  # a target file: a served model with its key and system prompt
        return EndpointPlayer.from_config(role, target_config(source.path, cfg))
    if source.kind == "endpoint":  # a served model: ``openai:MODEL@URL``
        from sparring.endpoints import parse_target

        g = cfg.generation
        return EndpointPlayer(
            role,
            parse_target(source.path),
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
        )
    if getattr(cfg, "type", "hf") == "openai":
        if source.kind != "model":  # the run's own defender: the served one
            return EndpointPlayer.from_config(role, cfg)
        cfg = cfg.model_copy(update={"type": "hf", "endpoint": None})  # a folder given by hand
    if source.kind == "checkpoint":
        player = Player.build(role, cfg, accelerator, trainable=False, checkpoint=Path(source.path))
    elif source.kind in ("final", "model") and is_mixture(source.path):
        return MixturePlayer.load(role, source.path, cfg, accelerator)  # a mixed strategy
    elif source.kind in ("final", "model"):
        update = {"model": source.path, "lora": None, "gguf_file": None, "revision": None}
        if source.kind == "model":
            update["tokenizer"] = None
        player = Player.build(role, cfg.model_copy(update=update), accelerator, trainable=False)
    else:
        player = Player.build(role, cfg, accelerator, trainable=False)
    player.module.eval()
    if with_reference and source.kind != "initial" and player.reference is None:
        if source.kind == "checkpoint" and cfg.lora is not None:
            return player  # reference_logprobs() disables the adapter
        ref = load_causal_lm(
            cfg.model,
            field=f"{role}.model",
            dtype=cfg.dtype,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            gguf_file=cfg.gguf_file,
        )
        ref.requires_grad_(False)
        ref.eval()
        player.reference = ref.to(accelerator.device)
    return player


#: the smallest batch evaluation answers in: keyed answers do not depend on their batch, and on
#: 2 CPU cores SmolLM2-135M answers 32 prompts at 256 tokens in 70 s as one batch, in 125 s as
#: four batches of 8
EVAL_BATCH = 32


def eval_batch_size(cfg) -> int:
    """Evaluation's batch size for a run config: the game's, at least :data:`EVAL_BATCH`."""
    return max(cfg.game.batch_size, EVAL_BATCH)


@contextlib.contextmanager
def answering_at(player, max_new_tokens: int, max_prompt_tokens: int | None = None):
    """The player answers with evaluation's limits inside the block (its own settings again
    after it). Yields the limits in force, ``{"max_new_tokens", "max_prompt_tokens"}``.

    A prompt and its answer must fit the model's context: the prompt limit is
    ``max_prompt_tokens``, else the larger of the player's training limit and the context less
    ``max_new_tokens``; the answer gets ``max_new_tokens`` or what the context leaves after
    the prompt limit, whichever is smaller (a 128-token model answers in at most 128 - 64).
    A served player keeps its server's prompt limit (None)."""
    if not hasattr(player, "cfg"):  # a served player
        before = player.max_new_tokens
        player.max_new_tokens = max_new_tokens
        try:
            yield {"max_new_tokens": max_new_tokens, "max_prompt_tokens": None}
        finally:
            player.max_new_tokens = before
        return
    cfg = player.cfg
    context = getattr(
        player.unwrapped.policy.config.get_text_config(), "max_position_embeddings", None
    )
    prompt_limit = max_prompt_tokens
    if prompt_limit is None:
        prompt_limit = max(cfg.max_prompt_tokens, context - max_new_tokens) if context else None
    new = max_new_tokens
    if context and prompt_limit is not None:
        prompt_limit = min(prompt_limit, context - 1)
        new = max(1, min(new, context - prompt_limit))
    g = cfg.generation.model_copy(
        update={"max_new_tokens": new, "min_new_tokens": min(cfg.generation.min_new_tokens, new)}
    )
    player.cfg = cfg.model_copy(
        update={"generation": g, "max_prompt_tokens": prompt_limit or 1_000_000}
    )
    try:
        yield {"max_new_tokens": new, "max_prompt_tokens": prompt_limit}
    finally:
        player.cfg = cfg


def prompts_cut(player, texts: Sequence[str], limit: int | None) -> int | None:
    """How many of ``texts`` the player's prompt limit cuts (their formatted prompt is longer
    than ``limit`` tokens); None for a served player or without a limit."""
    if limit is None or not hasattr(player, "format"):
        return None
    fmt = player.format
    ids = player.tokenizer(fmt(list(texts)), add_special_tokens=fmt.add_special_tokens)
    return sum(len(x) > limit for x in ids["input_ids"])


def generate_all(
    player,
    texts: list[str],
    batch_size: int,
    *,
    keys: Sequence[str] | None = None,
    kl: bool = False,
    on_batch=None,
):
    """Sample one continuation per text in batches; returns (texts, per-sequence KL or None).

    ``keys`` names each sample (:func:`sparring.players.sampling.sample_keys`); a local model
    then draws it from randomness keyed by that name, so the same weights give the same answer
    to the same named sample whatever was generated before, beside it in its batch, or on
    another process. Keyed samples are answered in order of prompt length (a batch holds
    prompts of about one length: less padding) and returned in the order given. Without keys
    the global RNG decides, in the order given.

    KL is the sum over response tokens of log pi - log pi_ref (both at the player's sampling
    temperature, as in training), 0 for the initial model. With several processes each one
    generates a contiguous block of the texts and the blocks are gathered in order, so the
    work is shared rather than repeated on every rank.
    """
    if keys is None:
        return _spread(player, texts, batch_size, None, kl=kl, on_batch=on_batch)
    if len(keys) != len(texts):
        raise ValueError(f"generate_all: {len(keys)} keys for {len(texts)} texts")
    order = sorted(range(len(texts)), key=lambda i: (len(str(texts[i])), i))
    out, kls = _spread(
        player,
        [texts[i] for i in order],
        batch_size,
        [keys[i] for i in order],
        kl=kl,
        on_batch=on_batch,
    )
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order))
    return [out[j] for j in back], (None if kls is None else np.asarray(kls)[back])


def _spread(player, texts, batch_size, keys, *, kl, on_batch):
    """:func:`_generate` over the processes: each one a contiguous block, gathered in order."""
    acc = getattr(player, "accelerator", None)  # a served player has none: one process asks
    world = acc.num_processes if acc is not None else 1
    if world > 1:
        from accelerate.utils import gather_object

        block = -(-len(texts) // world)
        mine = slice(acc.process_index * block, (acc.process_index + 1) * block)
        my_keys = list(keys[mine]) if keys is not None else None
        out, kls = _generate(player, texts[mine], batch_size, my_keys, kl=kl, on_batch=on_batch)
        done = gather_object([(out, None if kls is None else kls.tolist())])
        texts_all = [t for o, _ in done for t in o]
        kl_all = np.asarray([x for _, k in done for x in k]) if kl else None
        return texts_all, kl_all
    return _generate(player, texts, batch_size, keys, kl=kl, on_batch=on_batch)


def _generate(player, texts: list[str], batch_size: int, keys, *, kl: bool = False, on_batch=None):
    out: list[str] = []
    kls: list[float] = []
    for i in range(0, len(texts), batch_size):
        batch = texts[i : i + batch_size]
        if keys is None:
            gen = player.generate(batch)
        else:
            gen = player.generate(batch, keys[i : i + batch_size], keyed=True)
        out.extend(gen.texts)
        if kl:
            if not hasattr(player, "logprobs_and_values"):  # served: no log-probs to compare
                kls.extend([float("nan")] * len(gen.texts))
            elif player.reference is None and getattr(player.cfg, "lora", None) is None:
                kls.extend([0.0] * len(gen.texts))
            else:
                logp, _, _ = player.logprobs_and_values(gen)
                ref = player.reference_logprobs(gen)
                kls.extend(sequence_kl(logp, ref, gen.response_mask).tolist())
        if on_batch is not None:
            on_batch(len(gen.texts))
    return out, (np.asarray(kls) if kl else None)


#: what a served player's client counted, as results keep it (the cost line)
SPEND = ("requests", "attempts", "cache_hits", "failures", "blocked", "cost")


def endpoint_spend(player) -> dict[str, float] | None:
    """What a served player cost so far (:data:`SPEND`); None for a local model."""
    client = getattr(player, "client", None)
    return {k: client.stats[k] for k in SPEND} if client is not None else None


def free(player) -> None:
    """Release a player: an endpoint's connections and cache, a model's GPU memory."""
    close = getattr(player, "close", None)
    if close is not None:
        close()
    del player
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
