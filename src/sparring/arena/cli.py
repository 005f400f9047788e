"""``sparring arena build``: regenerate the arena's world data and retrain its models."""

from __future__ import annotations

import argparse
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from sparring.arena.build import SIZES, main

    argv = ["--seed", str(args.seed), "--size", args.size]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if args.quiet:
        argv.append("--quiet")
    assert args.size in SIZES
    return main(argv)


def add_commands(sub) -> None:
    from sparring.arena.build import SIZES

    arena = sub.add_parser("arena", help="the arena: a laptop-sized world with a known ground truth")
    cmds = arena.add_subparsers(dest="arena_command", required=True)
    build = cmds.add_parser("build", help="build the world data, the players and the proxy judge "
                            "(deterministic from --seed; cached for `arena:` references)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--size", choices=SIZES, default="default")
    build.add_argument("--out", type=Path, default=None, help="folder (default: the cache)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=_build)
