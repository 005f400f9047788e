"""The ``sparring`` command line."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from sparring.cli_args import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    add_out,
    add_quiet,
    exit_code_for,
    show_progress,
    with_examples,
)
from sparring.config import DEFAULT_CONFIG
from sparring.errors import SparringError
from sparring.runs import free_run_dir, require_run_dir

#: Modules that add subcommands: each has ``add_commands(subparsers)``; a command's handler is
#: stored with ``set_defaults(func=...)``, takes the parsed arguments and returns an exit code.
COMMAND_MODULES: list[str] = [
    "sparring.arena.cli",
    "sparring.evaluation.audit_cli",
    "sparring.evaluation.cli",
    "sparring.evaluation.regress_cli",
    "sparring.evaluation.scan",
    "sparring.experiments.cli",
    "sparring.experiments.sweep",
    "sparring.judges.serve",
    "sparring.models.cli",
]


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sparring.config import load_config
    from sparring.game.loop import Game

    if args.resume:
        run_dir = require_run_dir(args.resume, f"--resume {args.resume}")
        if args.config:
            raise SparringError("give either a CONFIG or --resume RUN_DIR, not both")
        cfg = load_config(run_dir / "config.yaml", [*args.set, f"output_dir={run_dir}"])
    else:
        config = args.config or DEFAULT_CONFIG
        overrides = list(args.set)
        if args.out:
            overrides.append(f"output_dir={args.out}")
        cfg = load_config(config, overrides)
        if cfg.output_dir is None:
            # no folder named: never reuse one that holds a run (runs/NAME, runs/NAME-2, ...)
            cfg.output_dir = str(free_run_dir(cfg.run_dir()))
    game = Game(cfg, resume=bool(args.resume), progress=None if show_progress(args) else False)
    summary = game.run()
    if game.acc.is_main_process and not args.quiet:
        Console().print(*summary_tables(summary))
        from sparring.evaluation.compare import compare_table, start_final_comparison

        comparison = start_final_comparison(game.run_dir, game.cfg.evaluation.quality)
        if comparison is not None:
            from sparring.evaluation.evaluate import shares_reward

            reward = shares_reward(game.cfg)
            Console().print(compare_table(comparison, "start", "final", reward))
    return 0


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)


def summary_tables(summary: dict) -> list:
    """The end-of-run summary as rich tables: the run, evaluation before/after, training curves."""
    from rich.table import Table

    run = Table(title=f"sparring train: {summary['run_dir']}", show_header=False)
    for key in ("mode", "steps", "seconds", "seconds_per_round"):
        run.add_row(key, _fmt(summary.get(key)))
    tables = [run]
    figures = sorted({k.split("/", 1)[1] for k in summary if k.startswith(("before/", "after/"))})
    if figures:
        ev = Table(title="evaluation: initial vs final players")
        for col in ("figure", "before", "after"):
            ev.add_column(col, justify="left" if col == "figure" else "right")
        for f in figures:
            ev.add_row(f, _fmt(summary.get(f"before/{f}")), _fmt(summary.get(f"after/{f}")))
        tables.append(ev)
    curves = Table(title="training (training judge): first vs last step of each stage")
    for col in ("stage", "figure", "first", "last"):
        curves.add_column(col, justify="right" if col in ("first", "last") else "left")
    for key in sorted(k for k in summary if k.endswith("/first")):
        stage, figure = key[: -len("/first")].split("/", 1)
        curves.add_row(
            stage, figure, _fmt(summary[key]), _fmt(summary.get(f"{stage}/{figure}/last"))
        )
    if curves.row_count:
        tables.append(curves)
    return tables


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparring", description="Align LLMs with a two-player game (GPO)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="play the game: train an attacker and a defender",
        **with_examples(
            "sparring train                                  # the built-in default (the arena)",
            "sparring train configs/smollm2-harmbench.yaml --set game.rounds=4",
            "sparring train my.yaml --out runs/try-1",
            "sparring train --resume runs/try-1              # after a kill or a failure",
        ),
    )
    train.add_argument(
        "config", nargs="?", help="run config (YAML); default: the built-in default run"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set attacker.lr=3e-6 (repeatable)",
    )
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint"
    )
    add_out(
        train,
        "run folder (default: the first free runs/<name>[-N]; --output-dir: the same)",
        metavar="DIR",
    )
    train.add_argument("--output-dir", dest="out", help=argparse.SUPPRESS)
    add_quiet(train)
    train.set_defaults(func=_train)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


def _version() -> str:
    from sparring import __version__

    return __version__


def _same():
    return contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (:mod:`sparring.cli_args`, docs/cli.md): 0
    success, 1 a finding, 2 bad usage or input, 3 a failure at run time, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)  # bad usage: argparse exits 2
    # --quiet: nothing on stdout but what --json asks for; errors still go to stderr
    quiet = getattr(args, "quiet", False) and not getattr(args, "json", False)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink) if quiet else _same():
            return args.func(args)
    except SparringError as exc:
        print(f"sparring: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:  # a run stopped by a signal says how to resume it
        print(f"sparring: interrupted{f'; {exc}' if str(exc) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a crash is a failure at run time, never a finding
        import traceback

        traceback.print_exc()
        print("sparring: error: the command failed (traceback above)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
