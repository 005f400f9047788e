"""The Python API: what the ``sparring`` command does, as typed functions.

    import sparring

    config = sparring.load_config("configs/arena.yaml", overrides=["game.rounds=2"])
    run = sparring.train(config)                 # plays the game; returns a sparring.Run
    print(run.run_dir, run.final_metrics()["asr"])
    result = sparring.evaluate(run.run_dir)      # the evaluation protocol, as `sparring eval`
    scan = sparring.scan("runs/arena/final/defender")   # refusal and over-refusal of any model

Every name here is exported from ``sparring`` itself (lazily: ``import sparring`` stays light).
The functions take the same inputs as the commands (a config object or file with overrides, a
run folder) and return plain data (dicts of figures) or a :class:`Run`; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparring.config import DEFAULT_CONFIG, RunConfig
from sparring.config import load_config as _load_config
from sparring.errors import SparringError
from sparring.runs import free_run_dir, read_jsonl, require_run_dir

__all__ = ["Run", "evaluate", "load_config", "load_run", "scan", "train"]


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), **values: Any
) -> RunConfig:
    """A validated run config from a YAML file (default: the built-in default run), with
    ``overrides`` as ``sparring train --set`` takes them (``"game.rounds=2"``) and ``values``
    as keyword overrides of top-level keys (``output_dir="runs/x"``). Errors name the file,
    the line and the nearest valid key."""
    extra = [f"{k}={v}" for k, v in values.items()]
    return _load_config(path or DEFAULT_CONFIG, [*overrides, *extra])


@dataclass
class Run:
    """A run folder and what it holds. ``metrics()`` and ``samples()`` read its logbook;
    ``evaluation(name)`` one of its evaluations (``"final"`` by default: training's own)."""

    run_dir: Path

    @property
    def config(self) -> RunConfig:
        return _load_config(self.run_dir / "config.yaml")

    def metrics(self) -> list[dict[str, Any]]:
        """Every step's row of ``metrics.jsonl``."""
        return read_jsonl(self.run_dir / "metrics.jsonl")

    def final_metrics(self) -> dict[str, Any]:
        """The last step's row of ``metrics.jsonl``."""
        rows = self.metrics()
        if not rows:
            raise SparringError(f"{self.run_dir}: no step recorded yet")
        return rows[-1]

    def samples(self) -> list[dict[str, Any]]:
        """Every logged sample (attack, answer, scores) of ``samples.jsonl``."""
        return read_jsonl(self.run_dir / "samples.jsonl")

    def evaluation(self, name: str = "final") -> dict[str, Any]:
        """``eval/<name>.json`` (``"start"``, ``"final"`` or a ``sparring eval --name``)."""
        from sparring.evaluation.evaluate import read_evals

        evals = read_evals(self.run_dir)
        if name not in evals:
            have = ", ".join(sorted(evals)) or "none"
            raise SparringError(f"{self.run_dir}: no evaluation {name!r} (have: {have})")
        return evals[name]

    @property
    def defender_dir(self) -> Path:
        """The trained defender as a plain Hugging Face folder (``final/defender``)."""
        return self.run_dir / "final" / "defender"


def load_run(run_dir: str | Path) -> Run:
    """An existing run folder (one that holds a ``config.yaml``)."""
    return Run(require_run_dir(run_dir))


def train(
    config: RunConfig | str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    resume: str | Path | None = None,
    progress: bool | None = None,
) -> Run:
    """Play the game as ``sparring train`` does and return the run. ``config`` is a config
    object, a YAML file or None (the built-in default); ``overrides`` apply to a file.
    Without an ``output_dir`` the run goes to the first free ``runs/<name>[-N]``: a folder
    that holds a run is never reused. ``resume``: continue that run folder instead."""
    from sparring.game.loop import Game

    if resume is not None:
        run_dir = require_run_dir(resume)
        cfg = _load_config(run_dir / "config.yaml", [*overrides, f"output_dir={run_dir}"])
    elif isinstance(config, RunConfig):
        if overrides:
            raise SparringError("overrides apply to a config file; edit the config object")
        cfg = config.model_copy(deep=True)
    else:
        cfg = load_config(config, overrides)
    if cfg.output_dir is None:
        cfg.output_dir = str(free_run_dir(cfg.run_dir()))
    game = Game(cfg, resume=resume is not None, progress=progress)
    game.run()
    return Run(game.run_dir)


def evaluate(run: Run | str | Path, **options: Any) -> dict[str, Any]:
    """Evaluate a run's players as ``sparring eval`` does; ``options`` are
    :func:`sparring.evaluation.evaluate.evaluate_run`'s (``samples``, ``answers``, ``prompts``,
    ``against``, ``checkpoint``, ``name``, ...). Returns the evaluation, also written to
    ``eval/<name>.json`` (by default ``eval/api.json``: training's own ``eval/final.json`` is
    never overwritten)."""
    from sparring.evaluation.evaluate import evaluate_run

    run_dir = run.run_dir if isinstance(run, Run) else Path(run)
    options.setdefault("name", "api")
    return evaluate_run(run_dir, **options)


def scan(target: str | Path, **options: Any) -> dict[str, Any]:
    """Measure any model (a folder, a target file, ``openai:MODEL@URL``) as ``sparring scan``
    does; ``options`` are :func:`sparring.evaluation.scan.scan`'s."""
    from sparring.evaluation.scan import scan as _scan

    return _scan(str(target), **options)
