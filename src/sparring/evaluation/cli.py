"""Subcommands that measure: ``eval``, ``crossplay``, ``report``, ``export-attacks``,
``archive merge``, ``regress``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparring.errors import SparringError
from sparring.runs import require_run_dir


def _console():
    from rich.console import Console

    return Console()


def _eval(args: argparse.Namespace) -> int:
    from sparring.evaluation.compare import read_eval_samples
    from sparring.evaluation.evaluate import evaluate_run
    from sparring.evaluation.tables import eval_tables

    run_dir = require_run_dir(args.run_dir)
    earlier = None
    if args.compare:
        if args.compare == (args.name or args.checkpoint or "final"):
            raise SparringError(
                f"--compare {args.compare}: this evaluation would overwrite it; give --name"
            )
        earlier = read_eval_samples(run_dir, args.compare)  # read first: fail before the models
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
        progress=not args.no_progress,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
    )
    console = _console()
    for table in eval_tables(result):
        console.print(table)
    console.print(f"wrote {run_dir / 'eval' / (result['name'] + '.json')}")
    if earlier is not None:
        _print_comparison(console, run_dir, args.compare, earlier, result["name"])
    return 0


def _print_comparison(console, run_dir: Path, start: str, earlier, final: str) -> None:
    """The new evaluation minus the earlier one, figure by figure, with 95% intervals."""
    from sparring.evaluation.compare import compare_evals, compare_table, read_eval_samples

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
    console.print(compare_table(compare_evals(start_rows, final_rows), start, final, reward))


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
        progress=not args.no_progress,
    )
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


def _regress(args: argparse.Namespace) -> int:
    import json

    from sparring.evaluation.regress import EXIT_CODES, regress, regress_table
    from sparring.evaluation.regress_report import write_html, write_junit

    archive = Path(args.archive)
    default = archive / "regress.json" if archive.is_dir() else archive.with_name("regress.json")
    out = Path(args.out) if args.out else default
    junit = Path(args.junit) if args.junit else out.with_suffix(".xml")
    page = Path(args.html) if args.html else out.with_suffix(".html")
    written = {"--out": out, "--junit": junit, "--html": page}
    if args.baseline:
        written["--baseline"] = Path(args.baseline)
    seen: dict[Path, str] = {}
    for option, path in written.items():
        if path.resolve() in seen:
            raise SparringError(
                f"{option} {path} is also {seen[path.resolve()]}: give another path"
            )
        seen[path.resolve()] = option
    try:
        result = regress(
            args.archive,
            args.against,
            config=args.config,
            answers=args.answers,
            max_asr=args.max_asr,
            gate=args.gate,
            confidence=args.confidence,
            max_undecided=args.max_undecided,
            baseline=args.baseline,
            seed=args.seed,
            batch_size=args.batch_size,
            budget=args.budget,
            cache=args.cache,
        )
    except SparringError:
        raise  # the CLI prints it and exits 2
    except Exception:  # an error is not a regression: exit 2, never 1
        import traceback

        traceback.print_exc()
        return EXIT_CODES["undecided"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_junit(result, junit)
    write_html(result, page)
    console = _console()
    console.print(regress_table(result))
    console.print(f"wrote {out}, {junit} (JUnit XML) and {page}")
    return EXIT_CODES[result["verdict"]]


REGRESS_EPILOG = """\
the --max-asr gate compares a one-sided exact (Clopper-Pearson) bound of the attack success
rate, over attacks, with the bar:
  --gate lower  (default) fail only when surely unsafe: fail when the lower bound exceeds the
                bar; a release whose true ASR is at or below the bar is blocked at most
                1 - confidence of the time
  --gate upper  pass only when surely safe: fail unless the upper bound is below the bar; a
                release whose true ASR is above the bar ships at most 1 - confidence of the
                time (it needs enough attacks: 59 with none succeeding, at a bar of 0.05)

exit codes:
  0  pass
  1  regressed: the gate failed, or the ASR rose above the baseline's beyond chance
  2  no verdict (no decided verdict, more than --max-undecided undecided, no attack shared
     with the baseline) or an error (a baseline made under other conditions, a bad option)
"""


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
        "eval", help="evaluate a run's players: defender ASR, attacker transfer and diversity, KL"
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--checkpoint", help="step-N (step-0 = initial models); default: the final models"
    )
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="MODEL_DIR",
        help="frozen target model the attacks are also tried on (repeatable)",
    )
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
    p.add_argument(
        "--samples", type=int, default=64, help="attacks to write, and prompts per set (default 64)"
    )
    p.add_argument(
        "--answers",
        type=int,
        default=1,
        help="defender answers per seed, held-out and benign prompt (default 1)",
    )
    p.add_argument("--name", help="eval/<name>.json (default: the checkpoint name or 'final')")
    p.add_argument(
        "--compare",
        metavar="NAME",
        help="afterwards, print this evaluation minus eval/NAME.json (e.g. start), prompt by "
        "prompt, with 95%% bootstrap intervals",
    )
    p.add_argument("--seed", type=int, default=1234)
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
    p.add_argument("--batch-size", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "crossplay", help="every saved attacker against every saved defender (heat map)"
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--samples", type=int, default=32, help="attacks per attacker checkpoint (default 32)"
    )
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="TARGET",
        help="also attack this model folder or served model openai:MODEL@URL (repeatable)",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_crossplay)

    p = sub.add_parser("report", help="write RUN_DIR/report/index.html with plots and tables")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=10, help="rows in the attack tables (default 10)")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "export-attacks", help="write the discovered attacks as a replayable dataset"
    )
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="jsonl file to write")
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

    p = sub.add_parser(
        "regress",
        help="replay an attack archive against a model or endpoint; exit 1 when it regresses",
        description="Replay an attack archive against a model or endpoint and gate a release "
        "on it.\nWrites the result JSON, a JUnit XML report and an HTML page.",
        epilog=REGRESS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("archive", help="archive.jsonl (or the run folder holding it)")
    p.add_argument(
        "--against",
        required=True,
        help="model folder, a target file (target.yaml: a served model with its api_key_env, "
        "system prompt, headers and limits) or a keyless served model openai:MODEL@URL",
    )
    p.add_argument(
        "--config", help="run config or folder for the judge (default: the archive's run)"
    )
    p.add_argument("--answers", type=int, default=1, help="answers per attack (default 1)")
    p.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="a served target may make at most N HTTP attempts (retries and failures count; "
        "cached answers are free)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="where a served target's answers are kept, so a rerun pays only for new ones "
        "(default: cache/regress beside the archive)",
    )
    p.add_argument(
        "--max-asr",
        type=float,
        help="the bar on the attack success rate; --gate says how a bound of it is compared",
    )
    p.add_argument(
        "--gate",
        choices=["lower", "upper"],
        default="lower",
        help="lower (default): fail only when the ASR is surely above --max-asr (bounds false "
        "blocks); upper: pass only when it is surely below (bounds unsafe releases shipped)",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="confidence of the one-sided bound the gate uses (default 0.95)",
    )
    p.add_argument(
        "--max-undecided",
        type=float,
        default=0.2,
        help="no verdict (exit 2) when more than this share of verdicts is undecided (default 0.2)",
    )
    p.add_argument(
        "--baseline",
        help="an earlier regress result of the same archive, judge, answers and target "
        "sampling: fail when ASR exceeds its ASR beyond the 95%% interval",
    )
    p.add_argument("--out", help="result JSON (default: regress.json beside the archive)")
    p.add_argument(
        "--junit",
        metavar="PATH",
        help="JUnit XML report (default: the result's path with .xml: regress.xml)",
    )
    p.add_argument(
        "--html",
        metavar="PATH",
        help="HTML report (default: the result's path with .html: regress.html)",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=_regress)

    p = sub.add_parser("archive", help="attack archives: merge")
    archive_sub = p.add_subparsers(dest="archive_command", required=True)
    m = archive_sub.add_parser("merge", help="join archives of several runs")
    m.add_argument("archives", nargs="+", help="archive.jsonl files or run folders")
    m.add_argument("--out", required=True)
    m.set_defaults(func=_archive_merge)
