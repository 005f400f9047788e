"""Subcommands that train to measure: ``exploit`` (a fresh attacker against a frozen defender) and
``experiment`` (the paper's arms over seeds); and ``judge-data`` (a run's defender answers
prompts, labelled: the data a judge trained on real answers learns from)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from sparring.cli_args import (
    add_against,
    add_batch_size,
    add_out,
    add_quiet,
    add_samples,
    add_seed,
    index_list,
    show_progress,
    with_examples,
)
from sparring.config import DEFAULT_CONFIG
from sparring.errors import SparringError
from sparring.runs import require_run_dir


def _exploit(args: argparse.Namespace) -> int:
    from sparring.evaluation.tables import fmt
    from sparring.experiments.exploit import exploit

    run_dir = require_run_dir(args.run_dir)
    result = exploit(run_dir, steps=args.steps, probes=args.probes, progress=show_progress(args))
    each = ", ".join(fmt(p["asr_fresh"], True) for p in result["probes"])
    sd = result["asr_fresh_sd"]
    Console().print(
        f"exploitability of {result['defender']}: {result['n_probes']} fresh attackers, each "
        f"trained for {result['steps']} steps against {result['trained_against']}, succeed on "
        f"{each} of {result['fresh_attacks']} fresh attacks each ({result['asr_fresh_judge']}): "
        f"max {fmt(result['asr_fresh'], True)}, mean {fmt(result['asr_fresh_mean'], True)}"
        + (f" (SD {100 * sd:.1f} points over probes)" if sd is not None else "")
        + "; lower = closer to equilibrium"
    )
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from sparring.experiments.experiment import EXPERIMENTS, KNOWN_ARMS, run_experiment, to_markdown

    if args.config is None:
        if args.world != "arena":
            raise SparringError(
                "experiment: give a base run config with --config, or --world arena"
            )
        args.config = DEFAULT_CONFIG  # the arena's default run
    arms = args.arms.split(",") if args.arms else EXPERIMENTS[args.name]
    bad = [a for a in arms if a not in KNOWN_ARMS]
    if bad:
        raise SparringError(f"unknown arm(s) {', '.join(bad)} (known: {', '.join(KNOWN_ARMS)})")
    out = Path(args.out or f"runs/experiment-{args.name}")
    console = Console()
    table = run_experiment(
        args.config,
        out=out,
        seeds=args.seeds,
        arms=arms,
        overrides=args.set,
        against=args.against,
        prompts=args.prompts,
        samples=args.samples,
        exploit=not args.no_exploit,
        exploit_steps=args.exploit_steps,
        exploit_probes=args.exploit_probes,
        primary=_primary(args.primary),
        only_seeds=index_list(args.only_seeds, "--only-seeds"),
        progress=show_progress(args),
        log=lambda m: console.print(m, markup=False, highlight=False),
    )
    if table is None:
        console.print(
            f"seeds {args.only_seeds} done in {out}; run it again without --only-seeds "
            "(with every seed's share done) to write the tables"
        )
        return 0
    console.print(to_markdown(table))
    console.print(f"wrote {out / 'results.md'}, {out / 'results.html'} and {out / 'results.json'}")
    return 0


def _primary(text: str | None) -> tuple[str, str] | None:
    """``SET:FIGURE`` (e.g. ``heldout_framings:ASR eval judge``) as (set, figure)."""
    if text is None:
        return None
    set_name, sep, figure = text.partition(":")
    if not sep or not set_name or not figure:
        raise SparringError(
            f"--primary {text!r}: expected SET:FIGURE, e.g. 'exploitability:ASR eval judge'"
        )
    return set_name, figure


def _judge_data(args: argparse.Namespace) -> int:
    from sparring.experiments.judge_data import DEFAULT_HARMFUL, collect_answers

    console = Console()
    collect_answers(
        args.config,
        args.out,
        overrides=args.set,
        harmful=args.harmful or DEFAULT_HARMFUL,
        benign=args.benign,
        answers=args.answers,
        benign_answers=args.benign_answers,
        prefill=args.prefill,
        limit=args.limit or None,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=show_progress(args),
        log=lambda m: console.print(m, markup=False, highlight=False),
    )
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "exploit",
        help="train a fresh attacker against the frozen final defender",
        **with_examples("sparring exploit runs/arena --probes 3"),
    )
    p.add_argument("run_dir", help="a run folder (the output_dir of sparring train)")
    p.add_argument(
        "--steps", type=int, help="attack steps per probe (default: twice the game's attack steps)"
    )
    p.add_argument("--probes", type=int, default=3, help="probes, each on its own seed (default 3)")
    add_quiet(p)
    p.set_defaults(func=_exploit)

    p = sub.add_parser(
        "experiment",
        help="paper: SFT, RLHF, RLHF+Div, GPO, GPO+Div over seeds; pools: GPO against opponent "
        "pools (uniform, PSRO), with and without diversity; turns: GPO over conversations "
        "against GPO on single turns",
        **with_examples(
            "sparring experiment paper --world arena --seeds 3",
            "sparring experiment pools --world arena --arms gpo,gpo-psro --out runs/pools",
            "sparring experiment turns --config configs/arena-multiturn.yaml --seeds 5",
        ),
    )
    p.add_argument("name", choices=sorted(["paper", "pools", "turns"]), help="which experiment")
    p.add_argument(
        "--config", help="base run config (YAML); with --world arena: the arena's default run"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config"
    )
    p.add_argument("--seeds", type=int, default=3, help="training seeds per arm (default 3)")
    p.add_argument(
        "--only-seeds",
        metavar="I,J-K",
        help="run only these seed indices and write no table, so several processes or machines "
        "share one experiment folder; a run without it then writes the tables",
    )
    add_out(p, "experiment folder (default: runs/experiment-NAME)", metavar="DIR")
    p.add_argument(
        "--arms", help="comma-separated arms (default: the experiment's; any known arm mixes in)"
    )
    add_against(p)
    p.add_argument(
        "--prompts",
        action="append",
        default=[],
        metavar="FILE",
        help="held-out prompt file or named source (default: the config's evaluation.prompts)",
    )
    add_samples(p, None, "prompts per set (default: the config's evaluation.samples)")
    p.add_argument("--no-exploit", action="store_true", help="skip the exploitability column")
    p.add_argument("--exploit-steps", type=int, help="attack steps per probe")
    p.add_argument("--exploit-probes", type=int, default=3, help="probes per defender (default 3)")
    p.add_argument(
        "--primary",
        metavar="SET:FIGURE",
        help="the figure that decides the experiment, named before it runs (default: "
        "exploitability, else the first held-out set, by the evaluation judge)",
    )
    p.add_argument(
        "--world",
        choices=["default", "arena"],
        default="default",
        help="arena: the default config is the arena's, evaluated on its held-out framings",
    )
    add_quiet(p)
    p.set_defaults(func=_experiment)

    from sparring.experiments.judge_data import DEFAULT_LIMIT

    p = sub.add_parser(
        "judge-data",
        help="the run's untrained defender answers harmful and benign prompts, labelled "
        "(data for 'sparring models train-judge --answers')",
        **with_examples(
            "sparring judge-data configs/smollm2-harmbench.yaml --out runs/judges/answers.jsonl"
        ),
    )
    p.add_argument("config", help="run config whose defender answers (model, template, sampling)")
    add_out(p, "answers file to write (JSON lines)", required=True, metavar="FILE")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override the config"
    )
    p.add_argument(
        "--harmful",
        action="append",
        default=None,
        metavar="SOURCE",
        help="harmful prompt source with -train/-test splits (default: harmbench, do-not-answer; "
        "StrongREJECT is kept out so that no judge has read an answer to it)",
    )
    p.add_argument(
        "--benign", default="benign", metavar="SOURCE", help="benign prompt source (default benign)"
    )
    p.add_argument("--answers", type=int, default=1, help="free answers per harmful prompt")
    p.add_argument("--benign-answers", type=int, default=3, help="free answers per benign prompt")
    p.add_argument(
        "--prefill",
        type=float,
        default=0.3,
        help="fraction of prompts that also get an answer forced to start with a refusal opener",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"prompts per source split (default {DEFAULT_LIMIT}; 0: all)",
    )
    add_seed(p, 0, "prompt draw and the answers")
    add_batch_size(p, 16)
    add_quiet(p)
    p.set_defaults(func=_judge_data)
