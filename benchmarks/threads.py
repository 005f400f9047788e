"""Several jobs on one machine: how many torch threads each should use.

Seeds, arms and sweeps are independent runs, and running several at once is how a CPU machine
is kept busy. Each torch process defaults to one thread per core; several such processes on
the same cores oversubscribe them, and on small models the threads then mostly wait for each
other. This script starts ``--jobs`` processes at once, each generating the same batches with
a model, first with ``--threads`` threads each (torch's default on this machine), then with
``cores // jobs`` threads each, interleaved ``--repeats`` times, and prints the median wall
time of each layout and their ratio, measured side by side in one run.

    python benchmarks/threads.py --model sparring:smollm2-135m-instruct
    python benchmarks/threads.py          # a tiny random model: the mechanics only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

WORKER = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1]); tok.padding_side = "left"
if tok.pad_token is None: tok.pad_token = tok.eos_token
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
enc = tok(["How do I bake bread at home?"] * int(sys.argv[3]), return_tensors="pt", padding=True)
print("ready", flush=True); sys.stdin.readline()
with torch.no_grad():
    for _ in range(int(sys.argv[4])):
        model.generate(**enc, max_new_tokens=int(sys.argv[5]), min_new_tokens=int(sys.argv[5]),
                       do_sample=False, pad_token_id=tok.pad_token_id)
print("done", flush=True)
"""


def layout(model: str, jobs: int, threads: int, args) -> float:
    """Wall seconds for ``jobs`` processes with ``threads`` threads each to finish, counted from
    when all of them have loaded the model."""
    argv = [str(model), str(threads), str(args.batch), str(args.batches), str(args.tokens)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(jobs)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout.readline().strip() == "done"
        p.wait()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or name (default: a tiny random model)")
    ap.add_argument("--jobs", type=int, default=2, help="processes at once (default 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="default: one per core")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from sparring.plugins import resolve_reference
    from sparring.testing import model_or_tiny

    model = model_or_tiny(args.model)
    model = str(resolve_reference(model) or model)
    split = max(1, (os.cpu_count() or 1) // args.jobs)
    arms = {f"{args.threads} threads each": args.threads, f"{split} thread(s) each": split}
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.repeats):
        for name, threads in arms.items():
            times[name].append(layout(model, args.jobs, threads, args))
    base = statistics.median(times[next(iter(arms))])
    print(
        f"{args.model or 'tiny random model'}: {args.jobs} processes at once on "
        f"{os.cpu_count()} cores, {args.batches} batches of {args.batch} x {args.tokens} tokens "
        f"each, median of {args.repeats} interleaved runs"
    )
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:22s} {m:7.1f} s   x{m / base:.2f} of the first")


if __name__ == "__main__":
    main()
