"""Subcommands that measure: ``eval``, ``crossplay``, ``report``, ``export-attacks``,
``archive merge`` (``regress``: :mod:`sparring.evaluation.regress_cli`; ``scan``:
:mod:`sparring.evaluation.scan`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparring.cli_args import (
    add_a_better,
    add_against,
    add_batch_size,
    add_json,
    add_out,
    add_quiet,
    add_samples,
    add_seed,
    show_progress,
    with_examples,
)
from sparring.errors import SparringError
from sparring.runs import require_run_dir

RUN_DIR = "a run folder (the output_dir of sparring train)"


def _console():
    from rich.console import Console

    return Console()


def _eval(args: argparse.Namespace) -> int:
    from sparring.evaluation.compare import read_eval_samples
    from sparring.evaluation.evaluate import evaluate_run
    from sparring.evaluation.tables import eval_tables
    from sparring.judges.registry import judge_from_file

    run_dir = require_run_dir(args.run_dir)
    earlier = None
    if args.compare:
        if args.compare == args.name:
            raise SparringError(
                f"--compare {args.compare}: this evaluation would overwrite it; give --name"
            )
        earlier = read_eval_samples(run_dir, args.compare)  # read first: fail before the models
    # re-scoring with other judges needs no edit of the run's config.yaml
    judge = judge_from_file(args.judge, "--judge") if args.judge else None
    eval_judge = judge_from_file(args.eval_judge, "--eval-judge") if args.eval_judge else None
    quality = None
    if args.quality_judge:
        if earlier is None:
            raise SparringError("--quality-judge compares two evaluations: give --compare EARLIER")
        quality = (judge_from_file(args.quality_judge, "--quality-judge"), args.a_better)
    result = evaluate_run(
        run_dir,
        checkpoint=args.checkpoint,
        against=args.against,
        prompts=args.prompts,
        benign=args.benign,
        samples=args.samples,
        answers=args.answers,
        name=args.name,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=show_progress(args),
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        judge=judge,
        eval_judge=eval_judge,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.quiet:
        return 0
    console = _console()
    for table in eval_tables(result):
        console.print(table)
    console.print(f"wrote {run_dir / 'eval' / (result['name'] + '.json')}")
    if earlier is not None:
        _print_comparison(console, run_dir, args.compare, earlier, result["name"], quality)
    return 0


def _print_comparison(
    console, run_dir: Path, start: str, earlier, final: str, quality=None
) -> None:
    """The new evaluation minus the earlier one, figure by figure, with 95% intervals (written
    to ``eval/<earlier>-vs-<new>.json``); ``quality``: ``(judge, a_better)`` adds the benign
    answers' pairwise quality."""
    from sparring.evaluation.compare import (
        add_quality,
        compare_evals,
        compare_table,
        read_eval_samples,
    )

    before, start_rows = earlier
    after, final_rows = read_eval_samples(run_dir, final)
    for role in ("judge", "eval_judge"):
        if before["judges"].get(role) != after["judges"].get(role):
            console.print(
                f"note: the {role.replace('_', ' ')} differs ({before['judges'].get(role)} in "
                f"{start}, {after['judges'].get(role)} in {final}): its ASR difference mixes "
                "two judges"
            )
    for key in ("seed", "samples"):
        if before.get(key) != after.get(key):
            console.print(
                f"note: --{key} differs ({before.get(key)} in {start}, {after.get(key)} in "
                f"{final}): only the prompts both evaluations drew are paired"
            )
    reward = after.get("shares_reward")
    comparison = compare_evals(start_rows, final_rows)
    if quality is not None:
        add_quality(comparison, start_rows, final_rows, *quality)
    name = run_dir / "eval" / f"{start}-vs-{final}.json"
    name.write_text(json.dumps(comparison, indent=2), encoding="utf-8")
    console.print(compare_table(comparison, start, final, reward))


def _crossplay(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sparring.evaluation.crossplay import crossplay
    from sparring.evaluation.tables import fmt

    run_dir = require_run_dir(args.run_dir)
    result = crossplay(
        run_dir,
        against=args.against,
        samples=args.samples,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=show_progress(args),
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(
        title=f"cross-play attack success ({result['judges']['judge']}): attacker rows, defender columns"
    )
    table.add_column("attacker \\ defender")
    for d in result["defenders"]:
        table.add_column(d, justify="right")
    for a, row in zip(result["attackers"], result["asr"], strict=True):
        table.add_row(a, *(fmt(v, True) for v in row))
    console = _console()
    console.print(table)
    if len(result["attackers"]) + len(result["defenders"]) <= 3:
        console.print(
            "only the initial models and one checkpoint were found; raise checkpoint.keep_last "
            "(and lower checkpoint.every) before training for a fuller matrix"
        )
    console.print(f"wrote {run_dir / 'eval' / 'crossplay.json'} and crossplay.png")
    return 0


def _report(args: argparse.Namespace) -> int:
    from sparring.evaluation.report import build_report

    path = build_report(require_run_dir(args.run_dir), top_k=args.top)
    _console().print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sparring.evaluation.export import attack_records, write_hf_dataset, write_jsonl

    run_dir = require_run_dir(args.run_dir)
    records = attack_records(
        run_dir, min_success=args.min_success, include_eval=args.include_eval, unique=args.unique
    )
    out = Path(args.out)
    write_jsonl(records, out)
    console = _console()
    console.print(f"wrote {len(records)} attacks to {out}")
    if not args.no_hf:
        hf_dir = Path(args.hf_dir) if args.hf_dir else out.with_name(out.stem + "_hf")
        if write_hf_dataset(records, hf_dir) is None:
            console.print(
                "the 'datasets' package is not installed: wrote jsonl only "
                "(pip install datasets for a Hugging Face dataset folder)"
            )
        else:
            console.print(f"wrote a Hugging Face dataset to {hf_dir} (datasets.load_from_disk)")
    return 0


def _archive_merge(args: argparse.Namespace) -> int:
    from sparring.evaluation.archive import merge

    counts = merge(args.archives, args.out)
    _console().print(
        f"wrote {args.out}: {counts['kept']} attacks kept of {counts['read']} read from "
        f"{counts['archives']} archives (exact duplicates dropped)"
    )
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run's players: defender ASR, attacker transfer and diversity, KL",
        **with_examples(
            "sparring eval runs/arena --compare start",
            "sparring eval runs/arena --checkpoint step-40 --prompts harmbench-test",
            "sparring eval runs/arena --eval-judge other-judge.yaml --name rescored",
            "sparring eval runs/my-run --against target.yaml --json",
        ),
    )
    p.add_argument("run_dir", help=RUN_DIR)
    p.add_argument(
        "--checkpoint", help="step-N (step-0 = initial models); default: the final models"
    )
    add_against(p, "also try the attacks on")
    p.add_argument(
        "--prompts",
        action="append",
        default=[],
        metavar="FILE",
        help="held-out prompt file the defender answers (repeatable; named by file stem)",
    )
    p.add_argument(
        "--benign", metavar="FILE", help="benign prompts for over-refusal (default: game.benign)"
    )
    add_samples(
        p, None, "attacks to write, and prompts per set (default: the run's evaluation.samples)"
    )
    p.add_argument("--judge", metavar="FILE", help="re-score with this judge spec (YAML)")
    p.add_argument("--eval-judge", metavar="FILE", help="and this evaluation judge spec (YAML)")
    p.add_argument(
        "--quality-judge",
        metavar="FILE",
        help="with --compare: a judge spec (YAML) that compares the two evaluations' benign "
        "answers pairwise (which is more helpful), in both orders",
    )
    add_a_better(p, "--quality-judge")
    p.add_argument(
        "--answers",
        type=int,
        default=1,
        help="defender answers per seed, held-out and benign prompt (default 1)",
    )
    p.add_argument(
        "--name",
        help="eval/<name>.json (default: the checkpoint name or 'final', with -2, -3, ... "
        "added when that evaluation exists: none is overwritten)",
    )
    p.add_argument(
        "--compare",
        metavar="NAME",
        help="afterwards, print this evaluation minus eval/NAME.json (e.g. start), prompt by "
        "prompt, with 95%% bootstrap intervals",
    )
    add_seed(p, 1234, "evaluation's draws")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="answer length (default: the run's evaluation.max_new_tokens, 256)",
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="prompt limit (default: the model's context less the answer); cut prompts are counted",
    )
    add_batch_size(p, None)
    add_json(p)
    add_quiet(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "crossplay",
        help="every saved attacker against every saved defender (heat map)",
        **with_examples("sparring crossplay runs/arena --samples 64 --against target.yaml"),
    )
    p.add_argument("run_dir", help=RUN_DIR)
    add_samples(p, 32, "attacks per attacker checkpoint")
    add_against(p)
    add_seed(p, 1234, "attacks' draws")
    add_batch_size(p, None)
    add_json(p)
    add_quiet(p)
    p.set_defaults(func=_crossplay)

    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report/index.html with plots and tables",
        **with_examples("sparring report runs/arena"),
    )
    p.add_argument("run_dir", help=RUN_DIR)
    add_quiet(p)
    p.add_argument("--top", type=int, default=10, help="rows in the attack tables (default 10)")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "export-attacks",
        help="write the discovered attacks as a replayable dataset",
        **with_examples("sparring export-attacks runs/arena --out attacks.jsonl --unique"),
    )
    p.add_argument("run_dir", help=RUN_DIR)
    add_out(p, "jsonl file to write", required=True, metavar="FILE")
    add_quiet(p)
    p.add_argument("--min-success", type=float, help="keep attacks with 1 - P(safe) >= X")
    p.add_argument(
        "--unique", action="store_true", help="keep the first record of each distinct attack"
    )
    p.add_argument(
        "--include-eval", action="store_true", help="add the attacks of eval/*.samples.jsonl"
    )
    p.add_argument(
        "--hf-dir", help="Hugging Face dataset folder (default: <out stem>_hf next to --out)"
    )
    p.add_argument("--no-hf", action="store_true", help="jsonl only")
    p.set_defaults(func=_export)

    p = sub.add_parser("archive", help="attack archives: merge")
    archive_sub = p.add_subparsers(dest="archive_command", required=True)
    m = archive_sub.add_parser(
        "merge",
        help="join archives of several runs",
        **with_examples("sparring archive merge runs/a runs/b --out attacks/archive.jsonl"),
    )
    m.add_argument("archives", nargs="+", help="archive.jsonl files or run folders")
    add_out(m, "the merged archive (jsonl)", required=True, metavar="FILE")
    add_quiet(m)
    m.set_defaults(func=_archive_merge)
