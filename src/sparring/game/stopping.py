"""Stopping a run cleanly on a signal, as preemption handlers do (NeMo's, TensorFlow's).

Ctrl-C (SIGINT) or SIGTERM (a scheduler preempting the job, ``kill``) mid-step used to abort at
once, losing every step since the last checkpoint: up to ``checkpoint.every`` steps, an hour of a
CPU run. Now the first signal asks the run to stop *after* the step in progress; the step
finishes, a checkpoint of it is written, and the run stops with the ``--resume`` command, so no
completed step is lost. A second signal stops at once (the old behaviour), for a step that would
take too long.

Several processes stop after the same step: each reports its flag at the end of every step and
the run stops when any process was asked to (a sum over processes). A process that stopped
alone would leave the others waiting in the next step's collectives.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context that, while entered, turns the first SIGINT/SIGTERM into a request (``.signal``
    names it) and the second into ``KeyboardInterrupt``. Outside the main thread (where Python
    cannot install handlers) it does nothing and signals act as before."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(
            f"sparring: {self.signal}: stopping after the step in progress, with a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def agreed(self, acc) -> bool:
        """Whether any process of the run was asked to stop: every process calls this at the same
        point of every step, and all of them get the same answer."""
        asked = self.signal is not None
        if acc.num_processes == 1:
            return asked
        import torch

        flag = torch.tensor([1.0 if asked else 0.0], device=acc.device)
        return bool(acc.reduce(flag, reduction="sum").item() > 0)


def checkpoint_here(game) -> str:
    """Checkpoint a :class:`~sparring.game.loop.Game`'s last completed step (unless it is
    saved), close its logbook, and say how to continue: every stop that is not a finish (a
    signal, a judge or an endpoint that failed) ends here."""
    if game.step > 0:
        game.save_checkpoint_unless_saved()
    game.writer.close()
    return (
        f"stopped before step {game.step + 1}: the run folder {game.run_dir} holds every "
        f"completed step, resume with `sparring train --resume {game.run_dir}`"
    )
