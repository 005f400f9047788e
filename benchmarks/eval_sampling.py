"""What keyed sampling and length-ordered batches cost in evaluation, side by side in one process.

Evaluation draws every answer from randomness keyed by its name
(:mod:`sparring.players.sampling`) and, being free to, answers prompts in order of length
(:func:`sparring.evaluation.players.generate_all`). This script times, on the same prompts
and model, with the same answer length:

- ``global``: transformers' own sampling from the global RNG, prompts in the order given (what
  evaluation did before keyed sampling);
- ``keyed``: keyed sampling, prompts in the order given;
- ``keyed+sorted``: keyed sampling, prompts answered in order of length (what evaluation does).

Each arm runs ``--repeats`` times, interleaved; the script prints each arm's median seconds and
its ratio to ``global`` measured in the same process, and the share of answers that stopped at
an end-of-sequence token before ``--max-new-tokens``.

    python benchmarks/eval_sampling.py --model sparring:smollm2-135m-instruct \
        --prompts harmbench-test --n 32 --max-new-tokens 256
    python benchmarks/eval_sampling.py            # a tiny random model: the mechanics only
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or name (default: a tiny random model)")
    ap.add_argument("--prompts", default="harmbench-test", help="a named source or prompt file")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from accelerate import Accelerator

    from sparring.config import DefenderConfig
    from sparring.evaluation.evaluate import load_prompt_file, pick
    from sparring.evaluation.players import generate_all
    from sparring.players.player import Player
    from sparring.players.sampling import sample_keys
    from sparring.testing import model_or_tiny

    torch.set_num_threads(args.threads)
    model = model_or_tiny(args.model)
    cfg = DefenderConfig(
        model=model,
        generation={"max_new_tokens": args.max_new_tokens, "temperature": 0.7, "top_p": 0.9},
        max_prompt_tokens=1024,
    )
    player = Player.build("defender", cfg, Accelerator(cpu=True), trainable=False)
    prompts = pick(load_prompt_file(args.prompts), args.n, 0)
    keys = sample_keys("bench", prompts)
    bs = args.batch_size

    def global_order():
        out = []
        for i in range(0, len(prompts), bs):
            out.extend(player.generate(prompts[i : i + bs]).texts)
        return out

    def keyed_order():
        out = []
        for i in range(0, len(prompts), bs):
            out.extend(player.generate(prompts[i : i + bs], keys[i : i + bs], keyed=True).texts)
        return out

    def keyed_sorted():
        return generate_all(player, prompts, bs, keys=keys)[0]

    arms = {"global": global_order, "keyed": keyed_order, "keyed+sorted": keyed_sorted}
    times: dict[str, list[float]] = {a: [] for a in arms}
    answers: dict[str, list[str]] = {}
    global_order()  # warm-up
    for _ in range(args.repeats):
        for name, fn in arms.items():
            t0 = time.perf_counter()
            answers[name] = fn()
            times[name].append(time.perf_counter() - t0)
    tok = player.tokenizer
    print(
        f"{Path(model).name}: {len(prompts)} prompts of {args.prompts}, batches of {bs}, "
        f"up to {args.max_new_tokens} new tokens, {args.threads} threads, "
        f"median of {args.repeats} interleaved runs"
    )
    base = statistics.median(times["global"])
    for name in arms:
        med = statistics.median(times[name])
        lengths = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers[name]]
        ended = sum(n < args.max_new_tokens - 1 for n in lengths) / len(lengths)
        print(
            f"  {name:<13} {med:7.1f} s   x{med / base:.2f} of global   "
            f"mean answer {statistics.mean(lengths):5.1f} tokens, {100 * ended:.0f}% ended early"
        )
    same = answers["keyed"] == answers["keyed+sorted"]
    print(f"  keyed answers identical in both orders: {same}")


if __name__ == "__main__":
    main()
