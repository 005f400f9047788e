"""What every command shares at run time: quiet libraries, seeding, progress bars, and the few
collective operations between processes (gather, broadcast, a flag raised on any rank).

A leaf: it imports nothing of Sparring's, so any floor may use it.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch


def quiet_libraries() -> None:
    """Our own progress bars replace the per-file bars of transformers' loading and saving; its
    info-level chatter and one deprecation warning it raises on our behalf are hidden."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )


def seed_everything(seed: int, rank: int = 0) -> None:
    """Python's, NumPy's and torch's global generators, offset by the process rank so that
    processes draw different samples from the same config."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


@contextlib.contextmanager
def forked_rng(seed: int) -> Iterator[None]:
    """Inside the block torch's generators (CPU, and the current CUDA device) start from
    ``seed``; after it they are back where they were. Measurements taken during training (an
    opponent pool's payoffs, the round probe) sample under it, so they never move the game's own
    random stream and a resumed run samples them as the uninterrupted one did."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


#: seconds between two lines of a progress display written to a log file (not a terminal)
LOG_EVERY = 30.0


def progress_bar(
    enabled: bool, *, remaining: bool = False, info: bool = False
) -> AbstractContextManager:
    """A rich progress display (description, bar, done/total, elapsed), or ``nullcontext(None)``
    when off. ``remaining`` adds the time left; ``info`` a free text field (``info=...``).
    Written to a file (``nohup``, a batch job's log) it prints a line per task every
    :data:`LOG_EVERY` seconds and when the task completes (:func:`logged_progress`)."""
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if remaining:
        columns.append(TimeRemainingColumn())
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return logged_progress(*columns)


def logged_progress(*columns: Any, every: float = LOG_EVERY, **kw: Any):
    """A rich ``Progress`` that also works off a terminal. Rich draws a live display only on a
    terminal; written to a file it shows nothing until the display stops, so a job under
    ``nohup`` or a cluster scheduler looks hung for its whole length. Off a terminal this one
    prints ``description: done/total (elapsed, info)`` for a task at most every ``every``
    seconds of its progress, and once when it completes; on a terminal it is rich's own."""
    import time

    from rich.progress import Progress

    class _Logged(Progress):
        def __init__(self) -> None:
            super().__init__(*columns, **kw)
            self._logged: dict[Any, float] = {}

        def update(self, task_id, **fields) -> None:
            super().update(task_id, **fields)
            self._log(task_id)

        def advance(self, task_id, advance: float = 1) -> None:
            super().advance(task_id, advance)
            self._log(task_id)

        def _log(self, task_id) -> None:
            if self.console.is_terminal:
                return
            task = next((t for t in self.tasks if t.id == task_id), None)
            if task is None or self._logged.get(task_id) == math.inf:
                return
            now = time.monotonic()
            if not task.finished and now - self._logged.get(task_id, now - every) < every:
                return
            self._logged[task_id] = math.inf if task.finished else now
            total = "?" if task.total is None else f"{task.total:g}"
            extra = task.fields.get("info")
            extra = f", {extra}" if extra else ""
            self.console.print(
                f"{task.description}: {task.completed:g}/{total} "
                f"({task.elapsed or 0.0:.0f} s{extra})",
                markup=False,
                highlight=False,
            )

    return _Logged()


class Tasks:
    """Named tasks on an optional progress display: ``advance = tasks.start(text, total)``
    returns a function that advances that task by ``k`` (a no-op without a display)."""

    def __init__(self, progress):
        self.progress = progress

    def start(self, text: str, total: int):
        if self.progress is None:
            return lambda k: None
        task = self.progress.add_task(text, total=total)
        return lambda k: self.progress.update(task, advance=k)


def gather(items: list, world: int) -> list:
    """Every rank's ``items``, concatenated in rank order, on every rank."""
    if world == 1:
        return list(items)
    from accelerate.utils import gather_object

    return list(gather_object(items))


def broadcast(obj, acc):
    """Rank 0's ``obj`` on every rank."""
    if acc.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


def mean_over_ranks(values: dict[str, float], world: int) -> dict[str, float]:
    """Each figure averaged over the ranks that have a finite value for it (NaN when none has)."""
    if world == 1:
        return values
    from accelerate.utils import gather_object

    gathered = gather_object([values])
    keys = set().union(*gathered)
    out = {}
    for k in keys:
        xs = [g[k] for g in gathered if k in g and g[k] is not None and math.isfinite(g[k])]
        out[k] = float(np.mean(xs)) if xs else float("nan")
    return out


def any_rank(acc, flag: bool) -> bool:
    """True on every process when ``flag`` is true on any: with several processes, a decision to
    skip a backward pass must be the same everywhere, or the gradient all-reduce would hang."""
    if acc.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=acc.device)
    return bool(acc.reduce(t, reduction="sum").item() > 0)
