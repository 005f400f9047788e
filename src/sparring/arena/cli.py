"""``sparring arena build``: regenerate the arena's world data and retrain its models."""

from __future__ import annotations

import argparse
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from sparring.arena.build import main

    argv = ["--seed", str(args.seed), "--size", args.size]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if args.quiet:
        argv.append("--quiet")
    return main(argv)


def _check(args: argparse.Namespace) -> int:
    from sparring.arena.check import main

    argv = ["--seed", str(args.seed), "--size", args.size, "--n", str(args.n)]
    if args.arena is not None:
        argv += ["--arena", str(args.arena)]
    if args.json is not None:
        argv += ["--json", str(args.json)]
    return main(argv)


def add_commands(sub) -> None:
    from sparring.arena.build import SIZES

    arena = sub.add_parser(
        "arena", help="the arena: a laptop-sized world with a known ground truth"
    )
    cmds = arena.add_subparsers(dest="arena_command", required=True)
    build = cmds.add_parser(
        "build",
        help="build the world data, the players and the proxy judge "
        "(deterministic from --seed; cached for `arena:` references)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--size", choices=SIZES, default="default")
    build.add_argument("--out", type=Path, default=None, help="folder (default: the cache)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=_build)
    check = cmds.add_parser(
        "check",
        help="sample the arena's players by framing and print gold "
        "ASR, the attacker's framing mix and the proxy judge's accuracy",
    )
    check.add_argument("--arena", type=Path, default=None, help="arena folder (default: the cache)")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--size", choices=SIZES, default="default", help="the cached arena's world")
    check.add_argument("--n", type=int, default=120, help="requests per framing")
    check.add_argument("--json", type=Path, default=None, help="also write the report here")
    check.set_defaults(func=_check)
