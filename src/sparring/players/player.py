"""A player: policy (optionally LoRA), frozen reference, value head, tokenizer and template.

A player is data: the attacker and the defender are two instances of the same class, differing
only in their configuration. The RL code in :mod:`sparring.rl` trains either one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from sparring.config import PlayerConfig
from sparring.errors import CheckpointError, ModelError
from sparring.players.engine import prepare_player, uses_deepspeed
from sparring.players.loading import DTYPES, load_causal_lm, load_tokenizer
from sparring.players.modules import (
    LogprobRecorder,
    PolicyWithValue,
    ValueHead,
    response_features,
    split_lm,
)
from sparring.players.optim import make_optimizer, make_scheduler, with_lora
from sparring.players.sampling import eos_ids, generation_setup, sampling_as_configured
from sparring.players.templates import CleanedAttacks, PromptFormatter, clean_attacks, cut_at_ends
from sparring.rl.batch import Generation, concat, slice_generation
from sparring.rl.core import head_logprobs


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
        self.eos_ids = eos_ids(tokenizer, self.unwrapped.policy)
        self._reference_parts = split_lm(reference) if reference is not None else None

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
        # float32 master weights: AdamW steps of lr * update (1e-7 and below for RLHF) round away
        # in bfloat16 weights; the forward still runs in half precision under
        # accelerate.mixed_precision (DeepSpeed keeps float32 master weights itself)
        master_fp32 = (
            trainable and cfg.lora is None and cfg.dtype != "float32" and not uses_deepspeed()
        )
        if cfg.lora is not None:
            base = load_causal_lm(cfg.model, **kwargs)
            policy = with_lora(base, cfg, policy_dir, trainable)
            reference = None  # the adapter-disabled base
        else:
            if policy_dir is not None:
                policy = load_causal_lm(
                    str(policy_dir),
                    field=f"{role} checkpoint",
                    dtype="float32" if master_fp32 else cfg.dtype,
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
        if master_fp32:
            policy.float()
        if trainable and cfg.gradient_checkpointing:
            # transformers 5 renamed it; the old name still works there but warns
            enable = getattr(policy, "activation_checkpointing_enable", None)
            (enable or policy.gradient_checkpointing_enable)()
        module = PolicyWithValue(policy, value_head)
        optimizer = scheduler = None
        if trainable:
            optimizer = make_optimizer(module, cfg)
            # the scheduler stays ours: accelerate's wrapper advances a scheduler once per
            # process on every step (it assumes a dataloader sharded over processes), which
            # would run the schedule N times too fast on N processes
            scheduler = make_scheduler(optimizer, cfg, total_updates)
            module, optimizer = prepare_player(accelerator, role, module, optimizer, cfg)
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

    @property
    def unwrapped(self) -> PolicyWithValue:
        return self.accelerator.unwrap_model(self.module)

    @property
    def has_value(self) -> bool:
        return self.unwrapped.value_head is not None

    # -- generation and scoring ------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        texts: list,  # prompts, or Dialogues (sparring.players.templates)
        draws: Sequence[str] | None = None,
        *,
        keyed: bool = False,
    ) -> Generation:
        """Sample one continuation per text (batched, left padding, KV cache). ``draws`` names
        each sample. With ``keyed`` each sample is drawn from randomness keyed by its name
        (:mod:`sparring.players.sampling`: the same weights and name give the same answer,
        whatever ran before or sits beside it in the batch), as evaluation does; otherwise the
        global RNG decides (training, whose RNG state a checkpoint restores)."""
        if keyed and (draws is None or len(draws) != len(texts)):
            raise ValueError("keyed sampling needs one draw name per text")
        inputs, enc = self.format.encode(texts, self.cfg.max_prompt_tokens)
        device = self.accelerator.device
        query_ids, query_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        g = self.cfg.generation
        gen_cfg, processors = generation_setup(
            g,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_ids=self.eos_ids,
            keys=draws if keyed else None,
        )
        policy = self.unwrapped.policy
        recorder = LogprobRecorder(g.temperature) if self.fast else None
        hook = None
        if recorder is not None:
            lm = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
            hook = lm.register_forward_hook(recorder, with_kwargs=True)
        try:
            with self.accelerator.autocast(), sampling_as_configured(policy):
                out = policy.generate(
                    input_ids=query_ids,
                    attention_mask=query_mask,
                    generation_config=gen_cfg,
                    logits_processor=processors,
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

    def clean_attacks(self, gen: Generation, seeds: list[str]) -> CleanedAttacks:
        """The attacker's continuations made into prompts for the defender (see
        :func:`~sparring.players.templates.clean_attack`), and ``gen.response_mask`` cut where
        each attack ends: tokens the cleaner throws away (after the first line) earn no credit
        and pay no KL."""
        cleaned = self.clean_texts(gen.texts, seeds)
        cut_at_ends(self.tokenizer, gen.response_ids, gen.response_mask, cleaned.ends)
        return cleaned

    def clean_texts(self, raw: list[str], seeds: list[str]) -> CleanedAttacks:
        """Attacker continuations made into the defender's prompts, with this player's template,
        special tokens and cleaning settings (training and evaluation clean alike)."""
        return clean_attacks(
            raw,
            seeds,
            template_text=self.format.text,
            special_tokens=self.tokenizer.all_special_tokens,
            max_chars=getattr(self.cfg, "max_attack_chars", 1000),
            first_line=getattr(self.cfg, "stop_at_newline", True),
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
        entropy: bool = False,
        entropy_grad: bool = False,
    ):
        """Log-probs (and values, and the entropy when asked) of the generated tokens.

        Without ``grad`` the rows are scored ``rl.micro_batch_size`` at a time, so the no-grad
        scoring of a large batch holds one micro-batch's activations, as the update does.
        ``entropy_grad=False`` keeps the entropy out of the autograd graph (a statistic only).
        """
        t = self.cfg.generation.temperature

        def run(g: Generation):
            ids, mask, pos = g.sequences()
            with self.accelerator.autocast():
                lp, v, ent = self.module(
                    ids, mask, pos, g.response_ids, t, entropy=entropy, entropy_grad=entropy_grad
                )
            return lp, (v.float() if v is not None else None), ent

        if grad:
            return run(gen)
        with torch.no_grad():
            parts = [run(g) for g in self.micro_batches(gen)]
        return tuple(concat([p[i] for p in parts]) for i in range(3))

    @torch.no_grad()
    def reference_logprobs(self, gen: Generation) -> torch.Tensor:
        """Log-probs of the generated tokens under the frozen reference (micro-batch by
        micro-batch)."""
        if self.reference is not None:
            model, parts, adapter_off = (
                self.reference,
                self._reference_parts,
                contextlib.nullcontext(),
            )
        else:  # LoRA: the base with the adapter disabled is the reference
            model, parts = self.unwrapped.policy, self.unwrapped._parts
            adapter_off = model.disable_adapter()
        out = []
        with self.accelerator.autocast(), adapter_off:
            for g in self.micro_batches(gen):
                ids, mask, pos = g.sequences()
                n = g.response_ids.shape[1]
                feats, head, _ = response_features(model, parts, ids, mask, pos, n)
                lp, _ = head_logprobs(feats, head, g.response_ids, self.cfg.generation.temperature)
                out.append(lp)
        return torch.cat(out)

    def micro_batches(self, gen: Generation) -> list[Generation]:
        """``gen`` cut into row blocks of ``rl.micro_batch_size`` (one block when unset)."""
        size = self.cfg.rl.micro_batch_size or len(gen.texts)
        n = gen.response_ids.shape[0]
        if size >= n:
            return [gen]
        device = gen.response_ids.device
        return [
            slice_generation(gen, torch.arange(s, min(s + size, n), device=device))
            for s in range(0, n, size)
        ]

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
            if not uses_deepspeed():  # DeepSpeed's sharded state: save_engine_state
                torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), directory / "scheduler.pt")

    def save_engine_state(self, directory: Path) -> None:
        """Under DeepSpeed, the optimiser state is sharded over the processes (ZeRO): every
        process writes its shard through the engine's own checkpoint (a collective call)."""
        if uses_deepspeed() and self.optimizer is not None:
            self.module.save_checkpoint(str(directory / "deepspeed"), tag="state")

    def load_training_state(self, directory: Path) -> None:
        try:
            if uses_deepspeed():
                loaded, _ = self.module.load_checkpoint(
                    str(directory / "deepspeed"), tag="state", load_module_strict=False
                )
                if loaded is None:
                    raise OSError(f"no DeepSpeed state in {directory / 'deepspeed'}")
            else:
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

    def load_base(self, dtype: str | None = None):
        """A fresh copy of the player's base model, as its config names it (``dtype``: another
        dtype than the config's)."""
        c = self.cfg
        return load_causal_lm(
            c.model,
            field=f"{self.role}.model",
            dtype=dtype or c.dtype,
            revision=c.revision,
            trust_remote_code=c.trust_remote_code,
            gguf_file=c.gguf_file,
        )

    def export(self, directory: Path) -> None:
        """Write a plain Hugging Face model folder (LoRA merged into the base), in the player's
        ``dtype``: a bfloat16 full fine-tune trains float32 master weights
        (:meth:`build`) and is exported in bfloat16, as it was loaded, with its config saying
        so (its checkpoints keep the float32 weights, which resuming needs)."""
        policy = self.unwrapped.policy
        if self.cfg.lora is not None:
            base = self.load_base()
            from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict

            merged = PeftModel(base, policy.peft_config["default"])
            set_peft_model_state_dict(merged, get_peft_model_state_dict(policy))
            policy = merged.merge_and_unload()
        dtype = DTYPES[self.cfg.dtype]
        state = None
        if any(p.is_floating_point() and p.dtype != dtype for p in policy.parameters()):
            state = {
                k: v.to(dtype) if v.is_floating_point() else v
                for k, v in policy.state_dict().items()
            }
        policy.save_pretrained(directory, safe_serialization=True, state_dict=state)
        if state is not None:  # save_pretrained names the dtype of the weights in memory
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(directory)
            config.dtype = self.cfg.dtype
            config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
