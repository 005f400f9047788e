"""``sparring judge-data``: a run's own defender answers harmful and benign prompts, labelled.

A judge trained on templated answers has never read the answers it will score. This driver
has the *untrained* defender of a run config (its base model, its chat template, its sampling
settings) answer the train and test splits of harmful prompt sources and of a benign source,
labels every answer with :class:`sparring.judges.answers.Labeller` (two refusal detectors that
must agree) and writes the answers file that ``sparring models train-judge --answers FILE``
reads.

A small chat model rarely refuses on its own (SmolLM2-135M-Instruct refuses about 1 answer in
50 of HarmBench's behaviours), so a judge trained on its free answers alone would hardly see a
refusal in its words. For a fraction of the prompts (``prefill``) the defender also writes an
answer that is forced to *start* with a refusal opener ("I'm sorry, but") and continues it in its
own words. These answers are labelled by the same rules as the free ones (a forced opener that
the model talks its way out of is labelled by what it ends up saying) and are marked with the
opener in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparring.judges.answers import (
    Answer,
    Labeller,
    detector_agreement,
    summary,
    write_answers,
)

#: Openers a prefilled answer is forced to start with (cycled over the chosen prompts).
REFUSAL_OPENERS = (
    "I'm sorry, but I can't",
    "I can't help with",
    "I cannot provide",
    "Sorry, I won't",
    "I'm not able to help with",
    "I must decline",
)

#: StrongREJECT is left out, so that no judge Sparring trains has read an answer to it: it stays
#: a benchmark nothing in a run was fitted on
DEFAULT_HARMFUL = ("harmbench", "do-not-answer")
#: prompts per source split (``make smollm2-judges`` passes it explicitly)
DEFAULT_LIMIT = 120


def _pick(prompts: Sequence[str], limit: int | None, seed: int) -> list[str]:
    if limit is None or limit >= len(prompts):
        return list(prompts)
    order = np.random.default_rng(seed).permutation(len(prompts))[:limit]
    return [prompts[i] for i in sorted(order)]


def plan_prompts(
    harmful: Sequence[str], benign: str, *, limit: int | None, seed: int
) -> list[tuple[str, str, str, str]]:
    """``(kind, split, source, prompt)`` for every prompt to answer, in a fixed order."""
    from sparring.data.prompts import load_prompts

    rows = []
    for kind, sources in (("harmful", harmful), ("benign", [benign])):
        for src in sources:
            for split in ("train", "test"):
                name = f"{src}-{split}"
                for p in _pick(load_prompts(source=name), limit, seed):
                    rows.append((kind, split, name, p))
    return rows


def plan_jobs(
    rows: Sequence[tuple[str, str, str, str]], *, answers: int, benign_answers: int, prefill: float
) -> list[tuple[str, str, str, str, str]]:
    """``(kind, split, source, prompt, opener)`` for every answer to write: ``answers`` free
    answers per harmful prompt, ``benign_answers`` per benign one, and for every
    ``round(1 / prefill)``-th prompt one more forced to open with a refusal (the openers
    cycled); ``opener`` is "" for a free answer."""
    jobs = []
    every = int(round(1 / prefill)) if prefill > 0 else 0
    for i, (kind, split, source, prompt) in enumerate(rows):
        k = answers if kind == "harmful" else benign_answers
        jobs += [(kind, split, source, prompt, "")] * k
        if every and i % every == 0:
            opener = REFUSAL_OPENERS[(i // every) % len(REFUSAL_OPENERS)]
            jobs.append((kind, split, source, prompt, opener))
    return jobs


def collect_answers(
    config: str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    harmful: Sequence[str] = DEFAULT_HARMFUL,
    benign: str = "benign",
    answers: int = 1,
    benign_answers: int = 3,
    prefill: float = 0.3,
    limit: int | None = DEFAULT_LIMIT,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    log=print,
) -> dict:
    """Generate, label and write the answers; returns the counts (:func:`summary`)."""
    import torch

    from sparring.config import load_config
    from sparring.players.loading import load_causal_lm, load_tokenizer
    from sparring.players.sampling import eos_ids, generation_setup, sampling_as_configured
    from sparring.players.templates import PromptFormatter
    from sparring.runtime import Tasks, progress_bar, quiet_libraries, seed_everything

    quiet_libraries()
    cfg = load_config(config, list(overrides))
    d = cfg.defender
    if getattr(d, "type", "hf") != "hf":
        from sparring.errors import ConfigError

        raise ConfigError("judge-data: the defender must be a model folder, not a served model")
    tok = load_tokenizer(
        d.tokenizer or d.model,
        field="defender.tokenizer",
        revision=d.revision,
        trust_remote_code=d.trust_remote_code,
        gguf_file=d.gguf_file,
    )
    model = load_causal_lm(
        d.model,
        field="defender.model",
        dtype=d.dtype,
        revision=d.revision,
        trust_remote_code=d.trust_remote_code,
        gguf_file=d.gguf_file,
    ).eval()
    fmt = PromptFormatter(d.template, tok, "defender")
    ends = eos_ids(tok, model)
    labeller = Labeller()
    rows = plan_prompts(harmful, benign, limit=limit, seed=seed)
    jobs = plan_jobs(rows, answers=answers, benign_answers=benign_answers, prefill=prefill)
    seed_everything(seed)
    g = d.generation
    out_rows: list[Answer] = []
    with progress_bar(progress, remaining=True) as bar:
        advance = Tasks(bar).start(f"defender answers ({len(jobs)})", len(jobs))
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            texts = [
                t + opener
                for t, (*_, opener) in zip(fmt([j[3] for j in batch]), batch, strict=True)
            ]
            enc = tok(
                texts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=d.max_prompt_tokens,
                add_special_tokens=fmt.add_special_tokens,
            )
            gen_cfg, _ = generation_setup(g, pad_token_id=tok.pad_token_id, eos_ids=ends, keys=None)
            with torch.no_grad(), sampling_as_configured(model):
                ids = model.generate(**enc, generation_config=gen_cfg)
            replies = tok.batch_decode(
                ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
            )
            for (kind, split, source, prompt, opener), reply in zip(batch, replies, strict=True):
                out_rows.append(
                    labeller.answer(
                        prompt,
                        opener + reply,
                        kind=kind,
                        split=split,
                        source=source,
                        prefill=opener,
                        extra={"model": d.model},
                    )
                )
            advance(len(batch))
    write_answers(out, out_rows)
    counts = summary(out_rows)
    log(f"labels: {labeller.description}")
    for key, c in counts.items():
        log(
            f"{key:16s} answers {c['n']:5d}  ambiguous {c['ambiguous']:4d}  "
            f"refused {c['refused']:4d}  unsafe {c['unsafe']:4d}"
        )
    free = [a for a in out_rows if not a.prefill]
    agree = detector_agreement(free)
    kappa = "-" if agree["kappa"] is None else f"{agree['kappa']:.3f}"
    log(
        f"refusal detectors (garak strings vs Sparring patterns) on the {agree['n']} free "
        f"answers: agreement {agree['agreement']:.3f}, kappa {kappa}"
    )
    log(f"wrote {out} ({len(out_rows)} answers)")
    return counts
