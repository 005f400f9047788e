"""One RL step of Sparring against the bare compute floor and against TRL, on the same work.

Run:  python benchmarks/step.py                 (default: sizes 10m and 100m, GPO round profile)
      python benchmarks/step.py --sizes 10m --repeats 5 --no-round
      python benchmarks/step.py --curves 20      (fast vs reference path reward curves only)
      python benchmarks/step.py --update-memory  (one defender update: memory and time, Sparring vs TRL)

Everything runs in one process so that ratios are measured side by side on the same (noisy)
machine. Models are random Llama-style configs built locally with a word-level tokenizer; nothing
is downloaded. Each row is the median of ``--repeats`` timed steps after ``--warmup`` untimed ones.
Memory is the peak resident set size during the timed steps minus the resident size before the
system was built (weights + reference + optimiser state + activations), sampled every 2 ms.

``--update-memory`` measures only the update (forward + backward + optimiser step on a batch
generated and scored beforehand, as in :func:`update_memory`): its transient peak above the
resident size right before it, and its wall time, Sparring and TRL's GRPOTrainer stepped in turn.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch  # noqa: E402

SIZES = {
    # name: (vocab, hidden, layers, intermediate, heads)
    "10m": (8192, 256, 6, 688, 4),
    "100m": (32000, 768, 8, 2048, 12),
}
KL = 0.04
DEFAULT_SYSTEMS = {  # the 100m size runs fewer systems to keep the default run under ~10 minutes
    "100m": {"floor", "sparring", "fast", "trl"},
}
LR = 1e-6


# -- measurement helpers ----------------------------------------------------------------------
def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Samples the resident set size in a thread; ``peak`` is the maximum seen."""

    def __init__(self, period: float = 0.002):
        self.period, self.peak = period, rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Result:
    """Wall seconds and CPU seconds (this process, all threads) per timed step."""

    def __init__(self, name: str, times: list[float], mem: float, cpu: list[float]):
        self.name, self.times, self.mem, self.cpu = name, times, mem, cpu

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


# -- models -----------------------------------------------------------------------------------
def build_model_dir(root: Path, size: str, seed: int = 0) -> Path:
    """A random Llama-style model and a word-level tokenizer with the model's full vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab_size, hidden, layers, inter, heads = SIZES[size]
    directory = root / size
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}
    vocab.update({f"w{i}": i + 3 for i in range(vocab_size - 3)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    fast.save_pretrained(directory)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=2,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(directory, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    return directory, n


def prompts_for(n: int, length: int, vocab: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(f"w{int(i)}" for i in torch.randint(10, vocab - 10, (length,), generator=g))
        for _ in range(n)
    ]


def trivial_reward(texts: list[str]) -> list[float]:
    """The stand-in judge: cheap, deterministic, varies within a group."""
    return [(len(t) % 7) / 7.0 for t in texts]


def word_judge(prompts: list[str], responses: list[str]) -> list[float]:
    """P(safe) for the GPO round: the share of even-numbered words (varies with the text)."""
    out = []
    for r in responses:
        words = [w for w in r.split() if w[1:].isdigit()]
        out.append(sum(int(w[1:]) % 2 == 0 for w in words) / len(words) if words else 0.5)
    return out


# -- systems ----------------------------------------------------------------------------------
def floor_system(model_dir: Path, prompts: list[str], k: int, R: int, algorithm: str):
    """The bare work with transformers + torch: generate, reference forward, fwd + bwd + step."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = (
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        .eval()
        .requires_grad_(False)
    )
    head = torch.nn.Linear(policy.config.hidden_size, 1) if algorithm == "ppo" else None
    params = list(policy.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.95), eps=1e-6)
    rows = [p for p in prompts for _ in range(k)]
    enc = tok(rows, return_tensors="pt", padding=True)

    def step():
        with torch.no_grad():
            out = policy.generate(
                **enc,
                do_sample=True,
                max_new_tokens=R,
                min_new_tokens=R,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                pad_token_id=0,
            )
        ids = out
        mask = torch.cat(
            [enc["attention_mask"], torch.ones_like(out[:, enc["input_ids"].shape[1] :])], 1
        )
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        resp = out[:, -R:]
        with torch.no_grad():
            rl = ref(
                input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=R + 1
            ).logits[:, :-1]
            ref_lp = rl.gather(-1, resp.unsqueeze(-1)).squeeze(-1) - rl.logsumexp(-1)
        o = policy(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            logits_to_keep=R + 1,
            output_hidden_states=head is not None,
        )
        lg = o.logits[:, :-1]
        lp = lg.gather(-1, resp.unsqueeze(-1)).squeeze(-1) - lg.logsumexp(-1)
        adv = torch.randn(lp.shape[0], 1)
        loss = -(adv * torch.exp(lp - lp.detach())).mean() + KL * (lp - ref_lp).mean()
        if head is not None:
            v = head(o.hidden_states[-1][:, -(R + 1) : -1]).squeeze(-1)
            loss = loss + 0.5 * (v - adv).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sparring_system(
    model_dir: Path,
    prompts: list[str],
    k: int,
    R: int,
    algorithm: str,
    fast: bool,
    lora: bool = False,
):
    from sparring.rl.trainer import make_experience, update

    player = sparring_player(model_dir, k, R, algorithm, fast, lora)
    rows = [p for p in prompts for _ in range(k)]

    def step():
        gen = player.generate(rows)
        scores = torch.tensor(trivial_reward(gen.texts))
        exp = make_experience(player, gen, scores, k)
        update(player, exp)

    return step


def sparring_player(
    model_dir: Path,
    k: int,
    R: int,
    algorithm: str,
    fast: bool,
    lora: bool = False,
    micro_batch_size: int | None = None,
):
    """A trainable defender (policy, reference unless LoRA, optimiser) on the CPU."""
    from accelerate import Accelerator

    from sparring.config import DefenderConfig
    from sparring.players.player import Player

    rl = {"algorithm": algorithm, "samples_per_prompt": k, "kl_coef": KL}
    if micro_batch_size is not None:
        rl["micro_batch_size"] = micro_batch_size
    cfg = DefenderConfig(
        model=str(model_dir),
        template={"kind": "plain", "text": "{prompt}"},
        max_prompt_tokens=1024,
        lr=LR,
        generation={
            "max_new_tokens": R,
            "min_new_tokens": R,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 0,
            "repetition_penalty": 1.0,
        },
        rl=rl,
        lora={"r": 8, "alpha": 16} if lora else None,
    )
    return Player.build(
        "defender", cfg, Accelerator(cpu=True), trainable=True, total_updates=1000, fast=fast
    )


class Interleaved:
    """Systems built side by side and stepped in rounds, so machine noise hits all of them alike.

    Each system is built and warmed up alone (its resident memory after warm-up, minus before
    building, is its ``static`` memory: weights, reference, optimiser state); each timed step
    records its wall time and its transient peak above the resident size at the step's start.
    """

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.systems: dict[str, dict] = {}

    def add(self, key: str, name: str, build) -> None:
        release_memory()
        base = rss_mib()
        step = build()
        for _ in range(self.warmup):
            step()
        self.systems[key] = {
            "name": name,
            "step": step,
            "static": rss_mib() - base,
            "times": [],
            "cpu": [],
            "peak": 0.0,
        }
        print(f"  built {name} (+{self.systems[key]['static']:.0f} MiB)", flush=True)

    def round(self, keys=None) -> None:
        for key, sys_ in self.systems.items():
            if keys is not None and key not in keys:
                continue
            r0 = rss_mib()
            with PeakRSS() as mon:
                t0, c0 = time.perf_counter(), time.process_time()
                sys_["step"]()
                sys_["times"].append(time.perf_counter() - t0)
                sys_["cpu"].append(time.process_time() - c0)
            sys_["peak"] = max(sys_["peak"], mon.peak - r0)

    def results(self) -> dict[str, Result]:
        return {
            k: Result(s["name"], s["times"], s["static"] + s["peak"], s["cpu"])
            for k, s in self.systems.items()
            if s["times"]
        }


def trl_args(output_dir: Path, R: int, **over) -> dict:
    """TRL trainer arguments for the same work as Sparring's: fp32 on the CPU, R completion
    tokens forced, the same optimiser settings and KL coefficient, no logging or saving."""
    return dict(
        output_dir=str(output_dir),
        max_completion_length=R,
        beta=KL,
        learning_rate=LR,
        adam_beta2=0.95,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        generation_kwargs={"min_new_tokens": R},
        lr_scheduler_type="constant",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **over,
    )


def trl_driven(
    name: str,
    model_dir: Path,
    prompts: list[str],
    k: int,
    R: int,
    algorithm: str,
    warmup: int,
    repeats: int,
    tmp: Path,
    others: Interleaved,
    keys,
) -> Result:
    """TRL's trainer runs its own loop; after each of its timed steps the other systems take one.

    TRL steps are timed from on_step_begin to on_step_end (generation included).
    """
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    release_memory()
    base = rss_mib()
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    common = trl_args(
        tmp / f"trl-{algorithm}",
        R,
        per_device_train_batch_size=len(prompts) * k,
        num_generations=k,
        num_iterations=1,
        max_steps=warmup + repeats,
    )
    if algorithm == "grpo":
        args, cls = trl.GRPOConfig(**common), trl.GRPOTrainer
    else:
        args, cls = trl.RLOOConfig(**common), trl.RLOOTrainer
    data = Dataset.from_dict(
        {"prompt": [prompts[i % len(prompts)] for i in range(len(prompts) * (warmup + repeats))]}
    )

    def reward(prompts, completions, **kw):
        return trivial_reward(completions)

    rec = {"times": [], "cpu": [], "peak": 0.0, "static": 0.0}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == warmup:
                rec["static"] = rss_mib() - base
            self.r0 = rss_mib()
            self.mon = PeakRSS().__enter__()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            dt, dc = time.perf_counter() - self.t0, time.process_time() - self.c0
            self.mon.__exit__()
            if state.global_step > warmup:
                rec["times"].append(dt)
                rec["cpu"].append(dc)
                rec["peak"] = max(rec["peak"], self.mon.peak - self.r0)
                others.round(keys)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = cls(
            model=model,
            reward_funcs=reward,
            args=args,
            train_dataset=data,
            processing_class=tok,
            callbacks=[Clock()],
        )
        trainer.train()
    del trainer, model
    release_memory()
    return Result(name, rec["times"], rec["static"] + rec["peak"], rec["cpu"])


# -- one update: memory ----------------------------------------------------------------------
class UpdateMeter:
    """Wall time and transient peak RSS of one update, above the resident size right before it.

    ``start`` first returns freed heap memory to the system (``release_memory``), so that memory
    freed by an earlier step of either system is not silently reused inside the measured one.
    """

    def __init__(self):
        self.mon = None

    def start(self) -> None:
        if self.mon is not None:
            self.mon.__exit__()
        release_memory()
        self.r0 = rss_mib()
        self.mon = PeakRSS().__enter__()
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float, float]:
        """(transient peak MiB, wall seconds, CPU seconds of this process) since ``start``."""
        dt, dc = time.perf_counter() - self.t0, time.process_time() - self.c0
        self.mon.__exit__()
        peak, self.mon = self.mon.peak - self.r0, None
        return peak, dt, dc


def trl_update_driven(
    model_dir: Path,
    prompts: list[str],
    k: int,
    R: int,
    micro: int,
    warmup: int,
    repeats: int,
    tmp: Path,
    after_step,
) -> dict:
    """TRL's GRPOTrainer: its own loop, one generation, then ``warmup + repeats`` optimiser steps
    on that batch (``num_iterations``); ``after_step`` runs after each timed step.

    Each step is measured from ``on_step_begin`` to ``on_step_end`` (its micro-batches'
    forward + backward, gradient clipping, optimiser and scheduler step, ``zero_grad``), the
    window restarted right after ``_prepare_inputs`` whenever that generated (generation, reward
    and reference scoring are not in it).
    """
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        PrinterCallback,
        TrainerCallback,
    )

    rows = len(prompts) * k
    steps = warmup + repeats
    release_memory()
    base = rss_mib()
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    args = trl.GRPOConfig(
        **trl_args(
            tmp / "trl-update",
            R,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=rows // micro,
            num_generations=k,
            num_iterations=steps,  # every optimiser step on the one generated batch
            max_steps=steps,
        )
    )
    data = Dataset.from_dict({"prompt": [prompts[i % len(prompts)] for i in range(rows * steps)]})

    def reward(prompts, completions, **kw):
        return trivial_reward(completions)

    meter = UpdateMeter()
    rec = {"peaks": [], "times": [], "cpu": [], "static": 0.0}
    rec.update(generations=0, timed_generations=0)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            meter.start()
            if state.global_step == warmup:
                rec["static"] = meter.r0 - base

        def on_step_end(self, args, state, control, **kw):
            peak, dt, dc = meter.stop()
            if state.global_step > warmup:
                rec["peaks"].append(peak)
                rec["times"].append(dt)
                rec["cpu"].append(dc)
                after_step()

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=args,
            train_dataset=data,
            processing_class=tok,
            callbacks=[Clock()],
        )
        trainer.remove_callback(PrinterCallback)
        prepare = trainer._prepare_inputs

        def prepare_inputs(batch):
            before = trainer._buffered_inputs
            out = prepare(batch)
            if trainer._buffered_inputs is not before:  # it generated: not part of the update
                rec["generations"] += 1
                rec["timed_generations"] += trainer.state.global_step >= warmup
                rec["shape"] = (
                    tuple(out["prompt_ids"].shape),
                    tuple(out["completion_ids"].shape),
                    int(out["completion_mask"].sum()),
                )
                meter.start()
            return out

        trainer._prepare_inputs = prepare_inputs
        rec["ref"] = trainer.ref_model is not None and next(trainer.ref_model.parameters()).dtype
        trainer.train()
    return rec


def update_memory(args, tmp: Path, trl_version: str | None) -> None:
    """Peak memory and time of one defender update, Sparring against TRL's GRPOTrainer.

    Both take the same rows (``--prompts`` x ``-k``, ``--answer-tokens`` answer tokens forced by
    ``min_new_tokens``), in micro-batches of ``--micro-batch`` rows per forward/backward pass
    with the gradients accumulated into one optimiser step (Sparring ``rl.micro_batch_size``;
    TRL ``per_device_train_batch_size`` x ``gradient_accumulation_steps``). Each system
    generates and scores one batch, makes ``--warmup`` untimed updates on it (the optimiser
    state is allocated then) and then ``--repeats`` measured ones, a TRL step and a Sparring
    update in turn.
    """
    from accelerate import Accelerator  # noqa: F401 - imported before the baselines are taken
    from transformers.utils import logging as hf_logging

    from sparring.config import DefenderConfig  # noqa: F401
    from sparring.players.player import Player  # noqa: F401
    from sparring.rl.trainer import make_experience, update

    hf_logging.disable_progress_bar()
    size, k, R, micro = args.size, args.k, args.answer_tokens, args.micro_batch
    model_dir, n_params = build_model_dir(tmp, size)
    vocab = SIZES[size][0]
    prompts = prompts_for(args.prompts or 2, args.prompt_len, vocab)
    rows = len(prompts) * k
    if rows % micro:
        raise SystemExit(f"--micro-batch {micro} must divide the {rows} rows")
    reps = args.repeats or 3
    print(
        f"\n## One defender update, {size}: {n_params / 1e6:.1f}M parameters, vocab {vocab}, "
        f"float32; GRPO, kl_coef {KL} (reference model); {len(prompts)} prompts x k={k} = {rows} "
        f"rows, prompt {args.prompt_len} tokens, answers {R} tokens; micro-batches of {micro} rows "
        f"per forward/backward pass, {rows // micro} accumulated into one optimiser step (like "
        f"for like: same rows, same micro-batch for both); median of {reps} updates after {args.warmup} warm-up, "
        f"interleaved; torch threads {torch.get_num_threads()}"
    )
    release_memory()
    base = rss_mib()
    player = sparring_player(model_dir, k, R, "grpo", fast=False, micro_batch_size=micro)
    t0 = time.perf_counter()
    gen = player.generate([p for p in prompts for _ in range(k)])
    gen_s = time.perf_counter() - t0
    exp = make_experience(player, gen, torch.tensor(trivial_reward(gen.texts)), k)
    for _ in range(args.warmup):
        update(player, exp)
    release_memory()
    sp = {"static": rss_mib() - base, "peaks": [], "times": [], "cpu": []}
    print(
        f"  Sparring: generated {tuple(gen.response_ids.shape)} answer tokens in {gen_s:.1f} s "
        f"(prompt {tuple(gen.query_ids.shape)}, {int(gen.response_mask.sum())} real answer "
        f"tokens; not measured); static +{sp['static']:.0f} MiB",
        flush=True,
    )
    meter = UpdateMeter()

    def sparring_update():
        meter.start()
        update(player, exp)
        peak, dt, dc = meter.stop()
        sp["peaks"].append(peak)
        sp["times"].append(dt)
        sp["cpu"].append(dc)

    if trl_version is None:
        print("TRL not installed: Sparring only (pip install --no-deps trl)")
        for _ in range(reps):
            sparring_update()
        tr = None
    else:
        tr = trl_update_driven(
            model_dir, prompts, k, R, micro, args.warmup, reps, tmp, sparring_update
        )
        prompt_shape, answer_shape, real = tr["shape"]
        print(
            f"  TRL: prompt {prompt_shape}, answers {answer_shape} per micro-batch, {real} real "
            f"answer tokens; reference {tr['ref']}; {tr['generations']} generation(s), "
            f"{tr['timed_generations']} inside timed steps (cut out of the window either way); "
            f"static +{tr['static']:.0f} MiB"
        )
    print(
        "\nstatic = resident MiB added by building the system and its warm-up (weights, "
        "reference, optimiser state). update peak = peak resident MiB during one update "
        "(forward + backward of every micro-batch, gradient clipping, optimiser step, zero_grad; "
        "no generation, no reference or old-policy scoring) minus the resident MiB right before "
        "it. total = static + update peak. wall s / cpu s = wall seconds / CPU seconds of this "
        "process (all threads) of that update. Medians over the measured updates; ratios are "
        "Sparring / TRL of the medians."
    )
    print(
        "\n| system | static MiB | update peak MiB | total MiB | wall s | cpu s | peak / TRL | "
        "total / TRL | wall / TRL | cpu / TRL |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = [("Sparring GRPO", sp)]
    if tr is not None:
        table.append((f"TRL GRPOTrainer {trl_version}", tr))

    def med(r):
        peak = statistics.median(r["peaks"])
        return peak, r["static"] + peak, statistics.median(r["times"]), statistics.median(r["cpu"])

    for name, r in table:
        row = med(r)
        ratios = "- | - | - | -"
        if tr is not None:
            ratios = " | ".join(f"{a / b:.2f}" for a, b in zip(row, med(tr), strict=True))
        peak, total, wall, cpu = row
        print(
            f"| {name} | {r['static']:.0f} | {peak:.0f} | {total:.0f} | {wall:.2f} | {cpu:.2f} | "
            f"{ratios} |"
        )
    for name, r in table:
        print(
            f"{name}: update peaks MiB {[round(x) for x in r['peaks']]}, wall s "
            f"{[round(x, 2) for x in r['times']]}, cpu s {[round(x, 2) for x in r['cpu']]}"
        )


# -- GPO round --------------------------------------------------------------------------------
def gpo_round(tmp: Path, size_dir: Path, rounds: int, fast: bool) -> dict:
    """Play ``rounds`` GPO rounds (defend + attack step) and return per-phase times per step."""
    from sparring.config import load_config
    from sparring.game.loop import Game

    seeds = tmp / "seeds.txt"
    seeds.write_text("\n".join(prompts_for(32, 12, 8000, seed=3)) + "\n", encoding="utf-8")
    out = tmp / f"run-{'fast' if fast else 'ref'}-{time.time_ns()}"
    player = {
        "model": str(size_dir),
        "template": {"kind": "plain", "text": "{prompt}"},
        "generation": {
            "max_new_tokens": 24,
            "min_new_tokens": 24,
            "top_p": 1.0,
            "temperature": 1.0,
        },
        "rl": {"algorithm": "rloo", "samples_per_prompt": 4},
        "fast": fast,
    }
    data = {
        "name": "bench",
        "seed": 0,
        "output_dir": str(out),
        "attacker": {**player, "template": {"kind": "plain", "text": "rewrite {seed} :"}},
        "defender": player,
        "judge": {"type": "callable", "target": "__main__:word_judge"},
        "game": {"rounds": rounds, "batch_size": 4, "seeds": {"path": str(seeds)}},
        "checkpoint": {"every": 10_000, "keep_last": 1},
        "logging": {"progress": False, "tensorboard": False},
    }
    try:
        cfg = load_config(data=data)
    except (
        Exception
    ):  # the config schema may not have the ``fast`` field yet: pass it to the players
        for side in ("attacker", "defender"):
            data[side].pop("fast")
        cfg = load_config(data=data)
        for side in (cfg.attacker, cfg.defender):
            object.__setattr__(side, "fast", fast)
    game = Game(cfg, progress=False)
    t0 = time.perf_counter()
    game.run()
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"rows": rows, "wall": wall}


def print_round_profile(tmp: Path, model_dir: Path, rounds: int) -> None:
    print(
        f"\n## One GPO round (defend step + attack step), 10m model for both players, batch 4 x k=4 rloo, "
        f"24 new tokens; median over {rounds} rounds after the first"
    )
    for fast in (False, True):
        try:
            res = gpo_round(tmp, model_dir, rounds + 1, fast)
        except Exception as exc:  # noqa: BLE001 - report and carry on: the step table is the main result
            print(f"GPO round skipped: {type(exc).__name__}: {exc}")
            return
        rows = res["rows"][2:]  # drop the first round (warm-up)
        phases = sorted({k for r in rows for k in r if k.startswith("time/") and k != "time/step"})
        label = "fast" if fast else "reference"
        print(f"\n{label} path: phase seconds per step (median), by stage")
        print("| phase | defend | attack | share of round |")
        print("|---|---|---|---|")
        per = {}
        for stage in ("defend", "attack"):
            srows = [r for r in rows if r["stage"] == stage]
            per[stage] = {
                p: statistics.median([r.get(p, 0.0) for r in srows]) for p in phases + ["time/step"]
            }
        total = per["defend"]["time/step"] + per["attack"]["time/step"]
        for p in phases + ["time/step"]:
            both = per["defend"][p] + per["attack"][p]
            print(
                f"| {p[5:]} | {per['defend'][p]:.3f} | {per['attack'][p]:.3f} | {100 * both / total:.0f}% |"
            )
        accounted = sum(per["defend"][p] + per["attack"][p] for p in phases)
        print(
            f"round {total:.3f} s; phases account for {accounted:.3f} s; coordination (rest) "
            f"{total - accounted:.3f} s = {100 * (total - accounted) / total:.1f}%"
        )


# -- reward curves ----------------------------------------------------------------------------
def print_curves(tmp: Path, model_dir: Path, steps: int) -> None:
    print(
        f"\n## Learning: per-step reward, reference vs fast path, same seed, {steps} steps (GPO, rloo)"
    )
    curves = {}
    for fast in (False, True):
        res = gpo_round(tmp, model_dir, max(1, steps // 2), fast)
        curves[fast] = [(r["stage"], r["reward"], r.get("kl", 0.0)) for r in res["rows"]]
    print("| step | stage | reward ref | reward fast | kl ref | kl fast |")
    print("|---|---|---|---|---|---|")
    for i, ((st, a, ka), (_, b, kb)) in enumerate(zip(curves[False], curves[True], strict=True), 1):
        print(f"| {i} | {st} | {a:.4f} | {b:.4f} | {ka:.5f} | {kb:.5f} |")


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="10m,100m", help="comma list of " + ",".join(SIZES))
    ap.add_argument(
        "--prompts",
        type=int,
        default=0,
        help="distinct prompts per step (0: 4; 2 with --update-memory)",
    )
    ap.add_argument("-k", type=int, default=4, help="samples per prompt (num_generations)")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--completion-len", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--repeats", type=int, default=0, help="timed steps per system (0: 4 for 10m, 3 for 100m)"
    )
    ap.add_argument("--no-trl", action="store_true")
    ap.add_argument("--no-round", action="store_true", help="skip the GPO round profile")
    ap.add_argument(
        "--rounds", type=int, default=4, help="GPO rounds in the profile (plus one warm-up)"
    )
    ap.add_argument(
        "--curves", type=int, default=0, help="also print N-step reward curves of both paths"
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma list of systems: floor,sparring,fast,rloo,floor_ppo,ppo,"
        "ppo_fast,lora_fast,trl,trl_rloo (default: all for 10m, floor,sparring,fast,trl for 100m)",
    )
    ap.add_argument(
        "--update-memory",
        action="store_true",
        help="only: peak memory and time of one defender update, Sparring vs TRL",
    )
    ap.add_argument("--size", default="100m", help="--update-memory: model size")
    ap.add_argument("--answer-tokens", type=int, default=256, help="--update-memory: answer tokens")
    ap.add_argument(
        "--micro-batch", type=int, default=8, help="--update-memory: rows per forward/backward"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        import trl  # noqa: F401

        have_trl = not args.no_trl
        trl_version = trl.__version__
    except ImportError:
        have_trl, trl_version = False, None
    import transformers

    print(
        f"cores: {os.cpu_count()} (torch threads {torch.get_num_threads()}), cpu capability "
        f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl_version or 'TRL not installed'}"
    )
    print(f"command: python benchmarks/step.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    if args.update_memory:
        with tempfile.TemporaryDirectory() as t:
            update_memory(args, Path(t), trl_version)
        return
    args.prompts = args.prompts or 4
    only = {s for s in args.only.split(",") if s} or None
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for size in [s for s in args.sizes.split(",") if s]:
            model_dir, n_params = build_model_dir(tmp, size)
            vocab = SIZES[size][0]
            prompts = prompts_for(args.prompts, args.prompt_len, vocab)
            k, R = args.k, args.completion_len
            reps = args.repeats or (4 if size == "10m" else 3)
            print(
                f"\n## {size}: {n_params / 1e6:.1f}M parameters, vocab {vocab}; {args.prompts} prompts x k={k} = "
                f"{args.prompts * k} rows, prompt {args.prompt_len} tokens, completion {R} tokens; "
                f"median of {reps} steps after {args.warmup} warm-up"
            )
            default_keys = DEFAULT_SYSTEMS.get(size)
            keys = only or default_keys

            def want(key, keys=keys):
                return keys is None or key in keys

            plan = [
                ("floor", "Floor (critic-free)", "grpo", None, False),
                ("sparring", "Sparring GRPO", "grpo", False, False),
                ("fast", "Sparring GRPO fast", "grpo", True, False),
                ("rloo", "Sparring RLOO", "rloo", False, False),
                ("floor_ppo", "Floor (PPO)", "ppo", None, False),
                ("ppo", "Sparring PPO", "ppo", False, False),
                ("ppo_fast", "Sparring PPO fast", "ppo", True, False),
                ("lora_fast", "Sparring GRPO fast, LoRA r=8", "grpo", True, True),
            ]
            runner = Interleaved(args.warmup)
            for key, name, alg, fast, lora in plan:
                if not want(key):
                    continue
                if fast is None:
                    runner.add(
                        key, name, functools.partial(floor_system, model_dir, prompts, k, R, alg)
                    )
                else:
                    runner.add(
                        key,
                        name,
                        functools.partial(
                            sparring_system, model_dir, prompts, k, R, alg, fast, lora=lora
                        ),
                    )
            results: dict[str, Result] = {}
            drove = False
            if have_trl:
                for key, alg, driven in (
                    ("trl", "grpo", None),
                    ("trl_rloo", "rloo", {"floor", "rloo"}),
                ):
                    if want(key):
                        results[key] = trl_driven(
                            f"TRL {alg.upper()}Trainer {trl_version}",
                            model_dir,
                            prompts,
                            k,
                            R,
                            alg,
                            args.warmup,
                            reps,
                            tmp,
                            runner,
                            driven,
                        )
                        drove = drove or driven is None
            elif not args.no_trl:
                print("TRL not installed: its rows are skipped (pip install trl)")
            if not drove:
                for _ in range(reps):
                    runner.round()
            results = {**runner.results(), **results}
            refs = {
                "sparring": "floor",
                "fast": "floor",
                "rloo": "floor",
                "ppo": "floor_ppo",
                "ppo_fast": "floor_ppo",
                "lora_fast": "floor",
                "trl": "floor",
                "trl_rloo": "floor",
            }
            trl_ref = {"sparring": "trl", "fast": "trl", "rloo": "trl_rloo", "lora_fast": "trl"}
            print(
                "\nwall = seconds per step; cpu = CPU seconds of this process per step (all threads). On a "
                "shared machine the minimum is the least disturbed estimate of the work's cost; ratios "
                "are min/min for wall time and cpu time, and median/median of wall time."
            )
            print(
                "\n| system | wall min | wall median | cpu min | cpu median | n | peak MiB | / Floor: wall min, "
                "cpu min, wall median | / TRL: wall min, cpu min, wall median |"
            )
            print("|---|---|---|---|---|---|---|---|---|")

            def ratio(a, b):
                if b is None:
                    return "-"
                return (
                    f"{min(a.times) / min(b.times):.2f}, {min(a.cpu) / min(b.cpu):.2f}, "
                    f"{a.median / b.median:.2f}"
                )

            for key, r in results.items():
                rf = ratio(r, results.get(refs.get(key, "")))
                rt = ratio(r, results.get(trl_ref.get(key, "")))
                print(
                    f"| {r.name} | {min(r.times):.3f} | {r.median:.3f} | {min(r.cpu):.3f} | {r.cpu_median:.3f} | "
                    f"{len(r.times)} | {r.mem:.0f} | {rf} | {rt} |"
                )
            del runner
            release_memory()
            if size == "10m" and not args.no_round:
                print_round_profile(tmp, model_dir, args.rounds)
            if size == "10m" and args.curves:
                print_curves(tmp, model_dir, args.curves)


if __name__ == "__main__":
    main()
