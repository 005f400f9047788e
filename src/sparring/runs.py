"""The run folder: resolved config, metrics, samples, TensorBoard events and checkpoints.

Layout::

    RUN_DIR/config.yaml          resolved config (every default written out)
    RUN_DIR/metrics.jsonl        one line per step
    RUN_DIR/samples.jsonl        one line per (seed, attack, response) sample
    RUN_DIR/tb/                  TensorBoard events
    RUN_DIR/checkpoints/step-N/  both players, optimisers, RNG states, novelty history, counters
    RUN_DIR/final/{attacker,defender}/  plain Hugging Face model folders
    RUN_DIR/summary.json         headline figures of the finished run

Checkpoints are written to a temporary folder and renamed into place once complete, so a
crash never leaves a partial ``step-N``; temporary folders are ignored and cleaned up.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from sparring.errors import CheckpointError, ConfigError

CHECKPOINT_RE = re.compile(r"^step-(\d+)$")
COMPLETE = "checkpoint.json"

#: Fault-injection hook for the crash tests (tests/test_faults.py, benchmarks/faults.py): with
#: ``SPARRING_KILL_AT=NAME:STEP`` set, the process SIGKILLs itself at the named point of that
#: step. Unset (always, outside those tests), :func:`kill_point` does nothing.
KILL_AT_ENV = "SPARRING_KILL_AT"


def kill_point(name: str, step: int) -> None:
    """Die at once (SIGKILL, no clean-up) if ``SPARRING_KILL_AT`` names this point and step."""
    if os.environ.get(KILL_AT_ENV) == f"{name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


class RunWriter:
    """Appends metrics and samples as JSON lines and sends the scalars to the trackers
    (Accelerate's tracker classes: TensorBoard in ``RUN_DIR/tb``, W&B, MLflow, trackio, ...).
    Only the main process writes (``enabled``)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool,
        enabled: bool = True,
        purge_step: int | None = None,
        report_to: list[str] | None = None,
        tracker_kwargs: dict[str, dict[str, Any]] | None = None,
        project: str | None = None,
        config: dict[str, Any] | None = None,
    ):
        self.run_dir = run_dir
        self.enabled = enabled
        self.trackers: list[Any] = []
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.trackers = build_trackers(
                run_dir,
                tensorboard=tensorboard,
                report_to=report_to or [],
                tracker_kwargs=tracker_kwargs or {},
                project=project or run_dir.name,
                purge_step=purge_step,
                config=config,
            )

    def metrics(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        _append(self.run_dir / "metrics.jsonl", [row])
        if self.trackers:
            step = row["step"]
            prefix = row.get("stage", "")
            values = {
                f"{prefix}/{k}" if prefix else k: v
                for k, v in row.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
            }
            for tracker in self.trackers:
                tracker.log(values, step=step)

    def samples(self, rows: list[dict[str, Any]]) -> None:
        if self.enabled and rows:
            _append(self.run_dir / "samples.jsonl", rows)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


#: Accelerate's trackers that write into a folder of their own: ``RUN_DIR/<name>``.
TRACKER_DIRS = {"tensorboard": "tb"}


def build_trackers(
    run_dir: Path,
    *,
    tensorboard: bool,
    report_to: list[str],
    tracker_kwargs: dict[str, dict[str, Any]],
    project: str,
    purge_step: int | None = None,
    config: dict[str, Any] | None = None,
) -> list[Any]:
    """Started Accelerate trackers for a run: TensorBoard in ``RUN_DIR/tb`` (unless off) and every
    name in ``report_to``, each with its ``tracker_kwargs``; ``config`` (flattened to dotted
    keys) is stored with the trackers that keep hyperparameters. A name Accelerate does not know,
    or whose package is not installed, is a ConfigError that says so. Custom trackers registered
    with ``accelerate.tracking.register_tracker_class`` are named like the built-in ones."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import LoggerType

    builtin = {str(t) for t in LoggerType}
    names = (["tensorboard"] if tensorboard else []) + [n for n in report_to if n != "tensorboard"]
    available = {str(t) for t in get_available_trackers()}
    trackers = []
    for name in dict.fromkeys(names):
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(
                f"logging.report_to: unknown tracker {name!r} (known: "
                f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))})"
            )
        if name in builtin and name not in available:
            raise ConfigError(
                f"logging.report_to: tracker {name!r} needs its package (pip install {name})"
            )
        cls = LOGGER_TYPE_TO_CLASS[name]
        kwargs = dict(tracker_kwargs.get(name, {}))
        if name == "tensorboard":
            if purge_step is not None:
                kwargs.setdefault("purge_step", purge_step)
            tracker = cls(TRACKER_DIRS[name], run_dir, **kwargs)
        elif cls.requires_logging_directory:
            tracker = cls(project, run_dir / name, **kwargs)
        else:
            tracker = cls(project, **kwargs)
        tracker.start()
        if config is not None and name != "tensorboard":  # TensorBoard: config.yaml is beside it
            tracker.store_init_configuration(flat_config(config))
        trackers.append(tracker)
    return trackers


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and None as strings (what trackers store)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        elif isinstance(v, bool | int | float | str):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: _finite(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
        f.flush()


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop lines whose ``step`` is above ``max_step`` (work done after the last checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= max_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


# -- checkpoints ---------------------------------------------------------------------------------


def require_run_dir(path: str | Path, what: str | None = None) -> Path:
    """``path`` when it is a run folder (it holds ``config.yaml``), else a ConfigError that names
    it (``what``: how the user gave it, e.g. ``--resume PATH``)."""
    p = Path(path)
    if not (p / "config.yaml").is_file():
        raise ConfigError(f"{what or p}: no config.yaml there; is it a run folder?")
    return p


def has_run(run_dir: Path) -> bool:
    """True when ``run_dir`` already holds a run (metrics or checkpoints)."""
    return (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists()


def first_free(base: Path, taken) -> Path:
    """``base``, or ``base-2``, ``base-3``, ...: the first path for which ``taken(path)`` is
    false (a run folder, a scan folder, an evaluation's name: none is ever reused)."""
    candidate, n = base, 1
    while taken(candidate):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def free_run_dir(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... : the first that does not hold a run yet."""
    return first_free(base, has_run)


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    out = []
    if root.is_dir():
        for p in root.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and (p / COMPLETE).is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def begin_checkpoint(run_dir: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of ``step``."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def commit_checkpoint(
    run_dir: Path, tmp: Path, step: int, meta: dict[str, Any], keep_last: int
) -> Path:
    """Mark ``tmp`` complete, fsync it, rename it to ``step-N`` and prune old checkpoints."""
    try:
        kill_point("before-marker", step)
        (tmp / COMPLETE).write_text(
            json.dumps({"step": step, "time": time.time(), **meta}, indent=2)
        )
        _fsync_tree(tmp)
        kill_point("before-rename", step)
        final = run_dir / "checkpoints" / f"step-{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        kill_point("after-rename", step)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"cannot write checkpoint step-{step} in {run_dir}: {exc.strerror or exc}"
        ) from None
    for _, old in checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_partial_checkpoints(run_dir: Path) -> None:
    root = run_dir / "checkpoints"
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-") or (
                CHECKPOINT_RE.match(p.name) and not (p / COMPLETE).is_file()
            ):
                shutil.rmtree(p, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
