"""The game's state on disk and in memory: checkpoints (both players, novelty history, prompt
pools, counters, every rank's RNG) and the snapshot of draws a failed step is rolled back to.

A checkpoint is written to a temporary folder and renamed into place once complete
(:mod:`sparring.runs`), so a crash never leaves a partial ``step-N``.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparring import runs
from sparring.errors import CheckpointError
from sparring.runtime import broadcast


def save_rng(path: Path) -> None:
    """This process's Python, NumPy, torch (and CUDA) generator states, as tensors that
    ``torch.load(weights_only=True)`` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python_version": py[0],
        "python_state": torch.tensor(py[1], dtype=torch.int64),
        "python_gauss": py[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": np_state[2],
        "numpy_has_gauss": np_state[3],
        "numpy_gauss": np_state[4],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path)


def load_rng(path: Path) -> None:
    s = torch.load(path, weights_only=True)
    random.setstate(
        (s["python_version"], tuple(int(x) for x in s["python_state"].tolist()), s["python_gauss"])
    )
    np.random.set_state(
        (
            "MT19937",
            s["numpy_keys"].numpy().astype(np.uint32),
            s["numpy_pos"],
            s["numpy_has_gauss"],
            s["numpy_gauss"],
        )
    )
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def capture_draws(seeds, benign) -> dict[str, Any]:
    """What a step changes before its judge is called: prompt pools and RNG states."""
    state = {
        "seeds": copy.deepcopy(seeds.state_dict()),
        "benign": copy.deepcopy(benign.state_dict()) if benign is not None else None,
        "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_draws(before: dict[str, Any], seeds, benign) -> None:
    """Back to :func:`capture_draws`' snapshot."""
    seeds.load_state_dict(before["seeds"])
    if benign is not None:
        benign.load_state_dict(before["benign"])
    random.setstate(before["rng"][0])
    np.random.set_state(before["rng"][1])
    torch.set_rng_state(before["rng"][2])
    if "cuda" in before:
        torch.cuda.set_rng_state_all(before["cuda"])


def save_checkpoint(
    acc,
    run_dir: Path,
    step: int,
    *,
    players,
    novelty,
    state: dict[str, Any],
    meta: dict[str, Any],
    keep_last: int | None,
    pools=None,
) -> Path | None:
    """Write ``checkpoints/step-<step>`` on every rank: the trainable players (weights on rank
    0, optimiser state through each rank's engine), the novelty history, the opponent pools
    (``pool/``, when the run has them) and ``state`` (JSON), and each rank's RNG. Returns the
    committed folder on rank 0."""
    acc.wait_for_everyone()
    try:
        tmp = runs.begin_checkpoint(run_dir, step) if acc.is_main_process else None
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint step-{step} in {run_dir}: {exc}") from None
    tmp = broadcast(tmp, acc)
    trainable = [p for p in players if p is not None and p.trainable]
    try:
        if acc.is_main_process:
            for player in trainable:
                player.save(tmp / player.role)
                runs.kill_point(f"after-{player.role}-save", step)
            novelty.save(tmp / "novelty")
            if pools is not None:
                pools.save(tmp / "pool")
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        acc.wait_for_everyone()
        for player in trainable:
            player.save_engine_state(tmp / player.role)
        save_rng(tmp / "rng" / f"rank-{acc.process_index}.pt")
        acc.wait_for_everyone()
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint step-{step} in {run_dir}: {exc}") from None
    final = None
    if acc.is_main_process:
        final = runs.commit_checkpoint(run_dir, tmp, step, meta, keep_last)
    acc.wait_for_everyone()
    return final


def restore_checkpoint(checkpoint: Path, rank: int, *, novelty, seeds, benign) -> dict[str, Any]:
    """The novelty history, prompt pools and this rank's RNG from ``checkpoint`` (the players
    load their own); returns the saved ``state.json``."""
    try:
        state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        novelty.load(checkpoint / "novelty")
        seeds.load_state_dict(state["seeds"])
        if benign is not None and state.get("benign"):
            benign.load_state_dict(state["benign"])
        rng_file = checkpoint / "rng" / f"rank-{rank}.pt"
        if rng_file.exists():
            load_rng(rng_file)
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot restore the game state from {checkpoint}: {exc}") from None
    return state


def use_run_cache(run_dir: Path, acc, **parts) -> None:
    """Parts that pay per request (endpoints: a served defender, an LLM judge) keep their answers
    in ``RUN_DIR/cache`` (one folder per rank with several processes), so that a resumed run
    pays for none twice; their request budgets are counted in one file all ranks share."""
    folder = run_dir / "cache"
    budget = folder / "budget.sqlite"  # one request budget for all the processes
    if acc.num_processes > 1:
        folder = folder / f"rank-{acc.process_index}"
    for role, part in parts.items():
        if hasattr(part, "use_cache"):
            part.use_cache(folder, role, budget=budget)
