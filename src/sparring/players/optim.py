"""What trains a player's weights: LoRA adapters, the optimiser and the learning-rate schedule."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sparring.config import PlayerConfig
from sparring.players.modules import PolicyWithValue


def with_lora(base: nn.Module, cfg: PlayerConfig, adapter_dir: Path | None, trainable: bool):
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)


def make_optimizer(module: PolicyWithValue, cfg: PlayerConfig) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in module.policy.parameters() if p.requires_grad], "lr": cfg.lr}]
    if module.value_head is not None:
        groups.append(
            {"params": list(module.value_head.parameters()), "lr": cfg.value_lr or cfg.lr}
        )
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: PlayerConfig, total_updates: int):
    from transformers import get_scheduler

    name = {
        "constant": "constant_with_warmup",
        "inverse_sqrt": "inverse_sqrt",
        "linear": "linear",
        "cosine": "cosine",
    }[cfg.schedule]
    return get_scheduler(
        name, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=max(total_updates, 1)
    )
