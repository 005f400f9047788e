"""One Accelerate engine per trainable player.

Why not one ``Accelerator`` for both players:

- Under DeepSpeed an ``Accelerator`` drives one engine: ``backward()`` goes to the engine it
  prepared last, and the prepared optimiser's ``step()`` is a no-op. With both players prepared
  by one accelerator, every stage steps the same engine, and the other player never learns.
- Gradient accumulation counts micro-steps in the accelerator (``Accelerator.step``): a shared
  counter lets one player's micro-steps decide when the other one syncs.

So each trainable player gets an ``Accelerator`` of its own, following accelerate's recipe for
training several disjoint models ("Using multiple models with DeepSpeed"): one
``DeepSpeedPlugin`` per player, kept in a dict by the first accelerator and selected before
each player is prepared. The process state (devices, ranks, mixed precision) is shared; the
engines, step counters and DeepSpeed configs are not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accelerate import Accelerator
from accelerate.utils import DistributedType

from sparring.errors import ConfigError


def uses_deepspeed() -> bool:
    """True when the process was launched for DeepSpeed (``accelerate launch`` with a DeepSpeed
    config sets this before any accelerator exists)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def uses_fsdp() -> bool:
    """True when the process was launched for FSDP (``accelerate launch --use_fsdp``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def _cpu_process_group(kwargs: dict) -> None:
    """DeepSpeed and FSDP on a machine without a GPU: accelerate turns both off, silently, when
    asked for cpu=True, and starts no process group without a GPU (each process would see
    itself alone): ask for gloo."""
    import torch
    from accelerate.utils import InitProcessGroupKwargs

    kwargs["cpu"] = False
    if not torch.cuda.is_available():
        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]


def build_engines(cfg, roles: Sequence[str]) -> dict[str, Accelerator]:
    """An ``Accelerator`` per role (``cfg`` is the run's ``accelerate`` section)."""
    if not roles:
        raise ValueError("build_engines needs at least one role")
    kwargs = {
        "cpu": cfg.cpu,
        "mixed_precision": cfg.mixed_precision,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
    }
    engines: dict[str, Accelerator] = {}
    if uses_deepspeed() or uses_fsdp():
        _cpu_process_group(kwargs)
    if uses_deepspeed():
        from accelerate.utils import DeepSpeedPlugin

        # each reads the launcher's DeepSpeed config; one per player, so that each engine has
        # its own (the batch sizes filled in at prepare time differ between the players)
        plugins = {role: DeepSpeedPlugin() for role in roles}
        if any(p.zero_stage == 3 for p in plugins.values()):
            raise ConfigError(
                "DeepSpeed ZeRO-3 is not supported: it partitions every model loaded after it "
                "starts (the frozen reference, judges, a frozen player) into placeholders that "
                "no engine gathers, and checkpoints would hold those placeholders. Use ZeRO-2 "
                "(configs/accelerate/zero2.yaml; optimiser state and gradients sharded) and LoRA "
                "for players whose full weights do not fit one GPU"
            )
        ds_steps = plugins[roles[0]].deepspeed_config.get("gradient_accumulation_steps", "auto")
        if ds_steps != "auto" and int(ds_steps) != cfg.gradient_accumulation_steps:
            raise ConfigError(
                f"accelerate.gradient_accumulation_steps is {cfg.gradient_accumulation_steps} but "
                f"the DeepSpeed config says {ds_steps}; set them equal (the schedule's length "
                "and DeepSpeed's loss scaling both depend on it)"
            )
        engines[roles[0]] = Accelerator(deepspeed_plugins=plugins, **kwargs)
    else:
        engines[roles[0]] = Accelerator(**kwargs)
    kwargs.pop("kwargs_handlers", None)  # the process group exists now
    first = next(iter(engines.values()))
    if first.num_processes > 1 and first.distributed_type == DistributedType.NO:
        # e.g. FSDP launched on a machine without a GPU: accelerate sets up no data parallelism,
        # and every process would train its own copy
        raise ConfigError(
            f"{first.num_processes} processes were started but accelerate distributes nothing "
            "between them (distributed type NO): each would train its own players. FSDP needs "
            "GPUs; on CPUs use plain data parallelism (configs/accelerate/cpu-2proc.yaml) or "
            "DeepSpeed"
        )
    for role in roles[1:]:
        # the same settings again: a bare Accelerator() would reset the shared accumulation
        # steps to 1
        engines[role] = Accelerator(**kwargs)
    return engines


def make_accelerator(cfg) -> Accelerator:
    """A single engine for measuring (evaluation, cross-play): the devices and mixed precision of
    the run's ``accelerate`` section, nothing to accumulate since nothing trains."""
    return Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)


def deepspeed_player_config(ds: dict, role: str, cfg) -> None:
    """Fill a player's own DeepSpeed config (``ds``, in place) from its settings.

    - DeepSpeed needs a micro-batch size, which a game without dataloaders cannot infer: the
      player's ``rl.micro_batch_size`` is it when the config says ``auto``.
    - DeepSpeed clips gradients itself, at its config's ``gradient_clipping`` (accelerate's
      ``clip_grad_norm_`` only reads the norm back): ``auto`` becomes the player's
      ``rl.max_grad_norm`` (0, no clipping, when that is unset), so each player clips at its own
      setting; a number that differs from it is refused rather than silently applied to both.
    """
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = cfg.rl.micro_batch_size or 1
    want = float(cfg.rl.max_grad_norm or 0.0)
    clip = ds.get("gradient_clipping", "auto")
    if clip == "auto":
        ds["gradient_clipping"] = want
    elif float(clip) != want:
        raise ConfigError(
            f"{role}.rl.max_grad_norm is {cfg.rl.max_grad_norm} but the DeepSpeed config's "
            f"gradient_clipping is {clip}, and DeepSpeed clips by its config alone: remove "
            "gradient_clipping from the accelerate config (each player then clips at its own "
            "rl.max_grad_norm) or make the two equal"
        )


def prepare_player(accelerator: Accelerator, role: str, module, optimizer, cfg):
    """``accelerator.prepare`` of one player's module and optimiser, with the player's own
    DeepSpeed plugin selected first and filled from the player's settings
    (:func:`deepspeed_player_config`)."""
    state = accelerator.state
    plugins = getattr(state, "deepspeed_plugins", None)
    if plugins and role in plugins:
        state.select_deepspeed_plugin(role)
        deepspeed_player_config(plugins[role].deepspeed_config, role, cfg)
    return accelerator.prepare(module, optimizer)
