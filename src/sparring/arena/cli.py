"""``sparring arena build``: regenerate the arena's world data and retrain its models."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparring.cli_args import add_out, add_quiet, add_seed, show_progress, with_examples


def _build(args: argparse.Namespace) -> int:
    from sparring.arena.build import main

    argv = ["--seed", str(args.seed), "--size", args.size]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if not show_progress(args):
        argv.append("--quiet")
    return main(argv)


def _check(args: argparse.Namespace) -> int:
    from sparring.arena.check import main

    argv = ["--seed", str(args.seed), "--size", args.size, "--n", str(args.samples)]
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
        **with_examples("sparring arena build", "sparring arena build --size hard"),
    )
    add_seed(build, 0, "world and of its models' training")
    build.add_argument(
        "--size", choices=SIZES, default="default", help="which world (default: default)"
    )
    add_out(build, "arena folder (default: the cache)", type=Path, metavar="DIR")
    add_quiet(build)
    build.set_defaults(func=_build)
    check = cmds.add_parser(
        "check",
        help="sample the arena's players by framing and print gold "
        "ASR, the attacker's framing mix and the proxy judge's accuracy",
        **with_examples("sparring arena check --samples 200 --json check.json"),
    )
    check.add_argument("--arena", type=Path, default=None, help="arena folder (default: the cache)")
    add_seed(check, 0, "samples")
    check.add_argument("--size", choices=SIZES, default="default", help="the cached arena's world")
    check.add_argument(
        "--samples",
        "--n",
        dest="samples",
        type=int,
        default=120,
        help="requests per framing (default 120)",
    )
    check.add_argument("--json", type=Path, default=None, help="also write the report here")
    check.set_defaults(func=_check)
