"""The ``sparring`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from sparring.errors import SparringError

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"

#: Modules that add subcommands: each has ``add_commands(subparsers)``; a command's handler is
#: stored with ``set_defaults(func=...)``, takes the parsed arguments and returns an exit code.
COMMAND_MODULES: list[str] = [
    "sparring.arena.cli",
    "sparring.evaluation.cli",
    "sparring.judges.serve",
    "sparring.models.cli",
]


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sparring.config import load_config
    from sparring.game.loop import Game

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise SparringError(f"--resume {run_dir}: no config.yaml there; is it a run folder?")
        if args.config:
            raise SparringError("give either a CONFIG or --resume RUN_DIR, not both")
        cfg = load_config(run_dir / "config.yaml", [*args.set, f"output_dir={run_dir}"])
    else:
        config = args.config or DEFAULT_CONFIG
        overrides = list(args.set)
        if args.output_dir:
            overrides.append(f"output_dir={args.output_dir}")
        cfg = load_config(config, overrides)
    game = Game(cfg, resume=bool(args.resume), progress=False if args.no_progress else None)
    summary = game.run()
    if game.acc.is_main_process:
        table = Table(title=f"sparring train: {summary['run_dir']}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if key != "run_dir":
                table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparring", description="Align LLMs with a two-player game (GPO)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="play the game: train an attacker and a defender")
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
    train.add_argument("--output-dir", help="run folder (default: runs/<name>)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


def _version() -> str:
    from sparring import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SparringError as exc:
        print(f"sparring: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparring: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
