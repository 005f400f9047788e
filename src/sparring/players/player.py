"""A player: policy (optionally LoRA), frozen reference, value head, tokenizer and template.

A player is data: the attacker and the defender are two instances of the same class, differing
only in their configuration. The RL code in :mod:`sparring.rl` trains either one.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from sparring.config import PlayerConfig
from sparring.errors import CheckpointError, ModelError
from sparring.players.loading import load_causal_lm, load_tokenizer
from sparring.players.templates import PromptFormatter
from sparring.rl.core import entropy_from_logits, gather_logprobs


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

    ``forward`` returns logits and values only for the positions that predict the last
    ``n_response`` tokens, so the LM head never runs over the prompt.
    """

    def __init__(self, policy: nn.Module, value_head: ValueHead | None):
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(self, input_ids, attention_mask, position_ids, n_response: int):
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=n_response + 1,
            output_hidden_states=self.value_head is not None,
            use_cache=False,
        )
        logits = out.logits[:, -(n_response + 1) : -1]
        values = None
        if self.value_head is not None:
            hidden = out.hidden_states[-1][:, -(n_response + 1) : -1]
            values = self.value_head(hidden)
        return logits, values


@dataclass
class Generation:
    """One batch of sampled continuations (tensors on the player's device)."""

    query_ids: torch.Tensor  # [B, P] left-padded
    query_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, R]
    response_mask: torch.Tensor  # [B, R] 1 up to and including the first end-of-sequence token
    texts: list[str]  # decoded responses, special tokens removed
    inputs: list[str]  # the formatted model inputs
    # [B, R] log-probs of the sampled tokens under the sampling policy (raw logits / temperature),
    # recorded during generation on the fast path; None when not recorded
    logprobs: torch.Tensor | None = None

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = torch.cat([self.query_ids, self.response_ids], dim=1)
        mask = torch.cat([self.query_mask, self.response_mask], dim=1)
        return ids, mask, position_ids(mask)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens, as generate() does for left-padded batches."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


class Player:
    """One side of the game. Build with :meth:`build`."""

    def __init__(
        self,
        role: str,
        cfg: PlayerConfig,
        accelerator: Accelerator,
        tokenizer,
        module: PolicyWithValue,
        reference: nn.Module | None,
        optimizer=None,
        scheduler=None,
        trainable: bool = True,
        fast: bool | None = None,
    ):
        self.role = role
        # fast path: log-probs recorded during generation replace the no-grad policy forward, and
        # PPO values come from the training forward when one pass over the batch is made
        self.fast = bool(getattr(cfg, "fast", False)) if fast is None else bool(fast)
        self.cfg = cfg
        self.accelerator = accelerator
        self.tokenizer = tokenizer
        self.module = module
        self.reference = reference
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.trainable = trainable
        self.format = PromptFormatter(cfg.template, tokenizer, role)
        self.eos_ids = self._eos_ids()

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        role: str,
        cfg: PlayerConfig,
        accelerator: Accelerator,
        *,
        trainable: bool,
        total_updates: int = 1,
        checkpoint: Path | None = None,
        fast: bool | None = None,
    ) -> Player:
        field = f"{role}.model"
        tokenizer = load_tokenizer(
            cfg.tokenizer or cfg.model,
            field=f"{role}.tokenizer" if cfg.tokenizer else field,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            gguf_file=cfg.gguf_file,
        )
        kwargs = {
            "field": field,
            "dtype": cfg.dtype,
            "revision": cfg.revision,
            "trust_remote_code": cfg.trust_remote_code,
            "gguf_file": cfg.gguf_file,
        }
        policy_dir = checkpoint / "policy" if checkpoint is not None else None
        if cfg.lora is not None:
            base = load_causal_lm(cfg.model, **kwargs)
            policy = _with_lora(base, cfg, policy_dir, trainable)
            reference = None  # the adapter-disabled base
        else:
            if policy_dir is not None:
                policy = load_causal_lm(
                    str(policy_dir), field=f"{role} checkpoint", dtype=cfg.dtype
                )
            else:
                policy = load_causal_lm(cfg.model, **kwargs)
            reference = load_causal_lm(cfg.model, **kwargs) if trainable else None
        if len(tokenizer) > policy.get_input_embeddings().num_embeddings:
            raise ModelError(
                f"{field}: tokenizer has {len(tokenizer)} tokens but the model's embedding has "
                f"{policy.get_input_embeddings().num_embeddings}"
            )
        value_head = None
        if trainable and cfg.rl.algorithm == "ppo":
            value_head = ValueHead(policy.config.get_text_config().hidden_size)
            if checkpoint is not None:
                value_head.load_state_dict(load_file(str(checkpoint / "value_head.safetensors")))
        if trainable and cfg.gradient_checkpointing:
            # transformers 5 renamed it; the old name still works there but warns
            enable = getattr(policy, "activation_checkpointing_enable", None)
            (enable or policy.gradient_checkpointing_enable)()
        module = PolicyWithValue(policy, value_head)
        optimizer = scheduler = None
        if trainable:
            optimizer = _optimizer(module, cfg)
            scheduler = _scheduler(optimizer, cfg, total_updates)
            module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
        else:
            module.requires_grad_(False)
            module.to(accelerator.device)
        if reference is not None:
            reference.requires_grad_(False)
            reference.eval()
            reference.to(accelerator.device)
        player = cls(
            role,
            cfg,
            accelerator,
            tokenizer,
            module,
            reference,
            optimizer,
            scheduler,
            trainable,
            fast,
        )
        if checkpoint is not None and trainable:
            player.load_training_state(checkpoint)
        return player

    def _eos_ids(self) -> list[int]:
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen_eos = getattr(self.unwrapped.policy.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(int(i) for i in gen_eos)
        return sorted(ids)

    @property
    def unwrapped(self) -> PolicyWithValue:
        return self.accelerator.unwrap_model(self.module)

    @property
    def has_value(self) -> bool:
        return self.unwrapped.value_head is not None

    # -- generation and scoring ------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, texts: list[str]) -> Generation:
        """Sample one continuation per text (batched, left padding, KV cache)."""
        inputs = self.format(texts)
        enc = self.tokenizer(
            inputs,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.cfg.max_prompt_tokens,
            add_special_tokens=self.format.add_special_tokens,
        )
        device = self.accelerator.device
        query_ids, query_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        g = self.cfg.generation
        from transformers import GenerationConfig

        gen_cfg = GenerationConfig(
            do_sample=True,
            max_new_tokens=g.max_new_tokens,
            min_new_tokens=g.min_new_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            top_k=g.top_k or None,
            repetition_penalty=g.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            use_cache=True,
        )
        policy = self.unwrapped.policy
        recorder = _LogprobRecorder(g.temperature) if self.fast else None
        hook = None
        if recorder is not None:
            lm = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
            hook = lm.register_forward_hook(recorder, with_kwargs=True)
        try:
            with self.accelerator.autocast():
                out = policy.generate(
                    input_ids=query_ids, attention_mask=query_mask, generation_config=gen_cfg
                )
        finally:
            if hook is not None:
                hook.remove()
        response_ids = out[:, query_ids.shape[1] :]
        logprobs = None
        if (
            response_ids.shape[1] == 0
        ):  # nothing generated at all (max_new_tokens reached instantly)
            response_ids = torch.full(
                (out.shape[0], 1), self.eos_ids[0], dtype=out.dtype, device=out.device
            )
        elif recorder is not None:
            logprobs = recorder.finish(response_ids)
        response_mask = self.response_mask(response_ids)
        texts_out = self.tokenizer.batch_decode(
            response_ids.masked_fill(response_mask == 0, self.tokenizer.pad_token_id),
            skip_special_tokens=True,
        )
        return Generation(
            query_ids, query_mask, response_ids, response_mask, texts_out, inputs, logprobs
        )

    def response_mask(self, response_ids: torch.Tensor) -> torch.Tensor:
        """1 for tokens up to and including the first end-of-sequence token, 0 after it."""
        is_eos = torch.isin(response_ids, torch.tensor(self.eos_ids, device=response_ids.device))
        after = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        return (~after).long()

    def logprobs_and_values(
        self,
        gen: Generation,
        *,
        grad: bool = False,
        module: nn.Module | None = None,
        entropy_grad: bool = True,
    ):
        """Log-probs (and values, entropy) of the generated tokens from one forward pass.

        With ``grad``, the entropy is returned too; ``entropy_grad=False`` computes it outside the
        autograd graph (a statistic only: no [B, R, vocab] buffers kept for the backward pass).
        """
        ids, mask, pos = gen.sequences()
        n = gen.response_ids.shape[1]
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx, self.accelerator.autocast():
            logits, values = (module or self.module)(ids, mask, pos, n)
        logits = logits.float() / self.cfg.generation.temperature
        logprobs = gather_logprobs(logits, gen.response_ids)
        entropy = None
        if grad:
            with contextlib.nullcontext() if entropy_grad else torch.no_grad():
                entropy = entropy_from_logits(logits)
        return logprobs, (values.float() if values is not None else None), entropy

    @torch.no_grad()
    def reference_logprobs(self, gen: Generation) -> torch.Tensor:
        """Log-probs of the generated tokens under the frozen reference."""
        ids, mask, pos = gen.sequences()
        n = gen.response_ids.shape[1]
        if self.reference is not None:
            model, adapter_off = self.reference, contextlib.nullcontext()
        else:  # LoRA: the base with the adapter disabled is the reference
            model = self.unwrapped.policy
            adapter_off = model.disable_adapter()
        with self.accelerator.autocast(), adapter_off:
            logits = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                logits_to_keep=n + 1,
                use_cache=False,
            ).logits[:, -(n + 1) : -1]
        return gather_logprobs(logits.float() / self.cfg.generation.temperature, gen.response_ids)

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the policy (HF folder / peft adapter, safetensors), value head and optimiser state."""
        directory.mkdir(parents=True, exist_ok=True)
        unwrapped = self.unwrapped
        unwrapped.policy.save_pretrained(directory / "policy", safe_serialization=True)
        self.tokenizer.save_pretrained(directory / "policy")
        if unwrapped.value_head is not None:
            save_file(
                {
                    k: v.detach().cpu().contiguous()
                    for k, v in unwrapped.value_head.state_dict().items()
                },
                str(directory / "value_head.safetensors"),
            )
        if self.optimizer is not None:
            torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), directory / "scheduler.pt")

    def load_training_state(self, directory: Path) -> None:
        try:
            self.optimizer.load_state_dict(
                torch.load(directory / "optimizer.pt", weights_only=True, map_location="cpu")
            )
            self.scheduler.load_state_dict(
                torch.load(directory / "scheduler.pt", weights_only=True)
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"cannot restore {self.role} optimiser state from {directory}: {exc}"
            ) from None

    def export(self, directory: Path) -> None:
        """Write a plain Hugging Face model folder (LoRA merged into the base)."""
        policy = self.unwrapped.policy
        if self.cfg.lora is not None:
            base = load_causal_lm(
                self.cfg.model,
                field=f"{self.role}.model",
                dtype=self.cfg.dtype,
                revision=self.cfg.revision,
                trust_remote_code=self.cfg.trust_remote_code,
                gguf_file=self.cfg.gguf_file,
            )
            from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict

            merged = PeftModel(base, policy.peft_config["default"])
            set_peft_model_state_dict(merged, get_peft_model_state_dict(policy))
            policy = merged.merge_and_unload()
        policy.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)


class _LogprobRecorder:
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


def _with_lora(base: nn.Module, cfg: PlayerConfig, adapter_dir: Path | None, trainable: bool):
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


def _optimizer(module: PolicyWithValue, cfg: PlayerConfig) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in module.policy.parameters() if p.requires_grad], "lr": cfg.lr}]
    if module.value_head is not None:
        groups.append(
            {"params": list(module.value_head.parameters()), "lr": cfg.value_lr or cfg.lr}
        )
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def _scheduler(optimizer: torch.optim.Optimizer, cfg: PlayerConfig, total_updates: int):
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
