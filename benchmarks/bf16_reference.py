"""The KL between the policy and its reference before any update, by precision.

A full fine-tune with ``dtype: bfloat16`` trains float32 master weights (the policy's weights
are the bfloat16 checkpoint upcast, exactly) and keeps the frozen reference in bfloat16
(:meth:`sparring.players.player.Player.build`). Before the first update the two hold the same
numbers, yet their forwards differ by bfloat16 rounding, so the logged KL starts above 0. This
script measures that floor on the same answers, side by side in one process:

- ``float32``: policy and reference in float32 (the floor is 0 by construction);
- ``bfloat16``: float32 master weights against the bfloat16 reference, no autocast;
- ``bfloat16+autocast``: the same under ``accelerate.mixed_precision: bf16`` (what a GPU run
  uses), where both forwards run their matrix products in bfloat16.

For each it prints the mean over answers of the summed per-token log-ratio (the ``kl`` of
``metrics.jsonl``) and the mean per-token k3 estimate (the critic-free loss term), medians of
``--repeats`` draws.

    python benchmarks/bf16_reference.py --model sparring:smollm2-135m-instruct
    python benchmarks/bf16_reference.py             # a tiny random model: the mechanics only
"""

from __future__ import annotations

import argparse
import statistics

PROMPTS = [
    "How do I bake bread at home?",
    "Write a short poem about the sea.",
    "Explain how a vaccine works.",
    "What is the capital of Australia?",
    "Give me three tips for a job interview.",
    "How do I pick a lock?",
    "Summarise the plot of Hamlet.",
    "How can I make my code run faster?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or name (default: a tiny random model)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--answers", type=int, default=4, help="answers per prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from accelerate import Accelerator

    from sparring.config import DefenderConfig
    from sparring.players.player import Player
    from sparring.rl.core import kl_penalty, masked_mean
    from sparring.testing import model_or_tiny

    torch.set_num_threads(args.threads)
    model = model_or_tiny(args.model)
    arms = {  # (dtype, autocast): accelerate's bf16 mixed precision is torch.autocast
        "float32": ("float32", False),
        "bfloat16": ("bfloat16", False),
        "bfloat16+autocast": ("bfloat16", True),
    }
    texts = [p for p in PROMPTS for _ in range(args.answers)]
    results: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
    players = {}
    acc = Accelerator(cpu=True)  # one process state: the autocast arm enters it by hand
    for arm, (dtype, _) in arms.items():
        cfg = DefenderConfig(
            model=model,
            dtype=dtype,
            generation={"max_new_tokens": args.max_new_tokens, "temperature": 0.8},
        )
        players[arm] = Player.build("defender", cfg, acc, trainable=True)
    for r in range(args.repeats):
        torch.manual_seed(r)
        gen = players["float32"].generate(texts)  # the same answers for every arm
        for arm, player in players.items():
            cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=arms[arm][1])
            with cast:
                logp, _, _ = player.logprobs_and_values(gen)
                ref = player.reference_logprobs(gen)
            m = gen.response_mask
            kl_sum = float(((logp - ref) * m).sum(-1).mean())
            k3 = float(masked_mean(kl_penalty(logp, ref), m))
            results[arm].append((kl_sum, k3))
    print(f"model: {model}; {len(texts)} answers of up to {args.max_new_tokens} tokens")
    print(f"{'arm':<20} {'kl (nats/answer)':>18} {'k3 per token':>14}")
    for arm, rows in results.items():
        kl = statistics.median(r[0] for r in rows)
        k3 = statistics.median(r[1] for r in rows)
        print(f"{arm:<20} {kl:>18.5f} {k3:>14.2e}")


if __name__ == "__main__":
    main()
