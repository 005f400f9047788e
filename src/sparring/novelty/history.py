"""History policies: which earlier attacks are in the history ``X``.

Every attack passed to ``add`` gets the next integer id (ids increase in call order, so a
caller that gathers the attacks of all ranks in a fixed order gets the same history on every
rank). A policy decides which ids enter and which earlier ones leave:

* ``unbounded``: everything enters, nothing leaves (the method);
* ``window``: the last ``size`` attacks;
* ``reservoir``: Algorithm R, a uniform sample of ``size`` of all attacks seen so far. Each
  attack draws one integer from the policy's own ``numpy`` PCG64 generator (seeded by
  ``seed``), one at a time in input order, so the outcome does not depend on how attacks are
  split into ``add`` calls.

:class:`SampleReservoir` is the bounded sample behind ``selfbleu_sample``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sparring.novelty.specs import HistorySpec


@dataclass
class Admission:
    """Outcome of admitting a batch: ``entering`` ids with their ``positions`` in the batch, and
    the ``leaving`` ids of earlier batches."""

    entering: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    leaving: list[int] = field(default_factory=list)


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


class History:
    def __init__(self, spec: HistorySpec):
        self.policy = spec.policy
        self.size = spec.size
        self.next_id = 0
        self.window: deque[int] = deque()
        self.slots: list[int] = []  # reservoir positions -> id
        self.rng = np.random.Generator(np.random.PCG64(spec.seed))

    @property
    def removes(self) -> bool:
        return self.policy != "unbounded"

    def admit(self, n: int) -> Admission:
        first = self.next_id
        ids = list(range(first, first + n))
        self.next_id += n
        if self.policy == "unbounded":
            return Admission(ids, list(range(n)), [])
        entering: dict[int, int] = {}
        leaving: list[int] = []
        if self.policy == "window":
            for pos, i in enumerate(ids):
                self.window.append(i)
                entering[i] = pos
                if len(self.window) > self.size:
                    out = self.window.popleft()
                    if out >= first:
                        del entering[out]
                    else:
                        leaving.append(out)
        else:
            for pos, i in enumerate(ids):
                if len(self.slots) < self.size:
                    self.slots.append(i)
                    entering[i] = pos
                    continue
                j = int(self.rng.integers(0, i + 1))
                if j < self.size:
                    out = self.slots[j]
                    self.slots[j] = i
                    entering[i] = pos
                    if out >= first:
                        del entering[out]
                    else:
                        leaving.append(out)
        order = sorted(entering)
        return Admission(order, [entering[i] for i in order], sorted(leaving))

    def state(self) -> dict:
        return {
            "policy": self.policy,
            "size": self.size,
            "next_id": self.next_id,
            "window": list(self.window),
            "slots": list(self.slots),
            "rng": _rng_state(self.rng),
        }

    def load_state(self, state: dict) -> None:
        self.next_id = int(state["next_id"])
        self.window = deque(int(i) for i in state["window"])
        self.slots = [int(i) for i in state["slots"]]
        _set_rng_state(self.rng, state["rng"])


class SampleReservoir:
    """A reservoir sample of at most ``size`` of the ids entering a history.

    Ids enter in increasing order; while a position is free the id takes the lowest free one,
    otherwise Algorithm R (with its own seeded generator) decides. An id that leaves the history
    frees its position. With the unbounded policy the sample is exactly uniform; with window or
    reservoir histories it is approximately so.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.slots: list[int] = []
        self.free: list[int] = []
        self.seen = 0
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def admit(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """Returns (entering ids, leaving ids) of the sample."""
        entering: set[int] = set()
        leaving: list[int] = []
        for i in ids:
            self.seen += 1
            if self.free:
                self.slots[self.free.pop(0)] = i
                entering.add(i)
            elif len(self.slots) < self.size:
                self.slots.append(i)
                entering.add(i)
            else:
                j = int(self.rng.integers(0, self.seen))
                if j < self.size:
                    out = self.slots[j]
                    self.slots[j] = i
                    entering.add(i)
                    if out in entering:
                        entering.discard(out)
                    else:
                        leaving.append(out)
        return sorted(entering), sorted(leaving)

    def forget(self, ids: list[int]) -> list[int]:
        """Free the positions of ids that left the history; returns those that were sampled."""
        where = {v: p for p, v in enumerate(self.slots) if v >= 0}
        gone = []
        for i in ids:
            p = where.get(i)
            if p is not None:
                self.slots[p] = -1
                self.free.append(p)
                gone.append(i)
        self.free.sort()
        return sorted(gone)

    def state(self) -> dict:
        return {
            "size": self.size,
            "slots": list(self.slots),
            "free": list(self.free),
            "seen": self.seen,
            "rng": _rng_state(self.rng),
        }

    def load_state(self, state: dict) -> None:
        self.slots = [int(i) for i in state["slots"]]
        self.free = [int(i) for i in state["free"]]
        self.seen = int(state["seen"])
        _set_rng_state(self.rng, state["rng"])
