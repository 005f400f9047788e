"""The ``sparring regress`` command: its options, its reports (JSON, JUnit XML, HTML) and its
exit codes (0 pass, 1 regressed, 3 no verdict; bad input 2, as every command)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparring.cli_args import add_batch_size, add_json, add_quiet, add_seed
from sparring.errors import SparringError


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
    )  # an error: the CLI prints it and exits 2 (bad input) or 3 (a failure), never 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_junit(result, junit)
    write_html(result, page)
    if args.json:
        print(json.dumps(result, indent=2))
    elif not args.quiet:
        from rich.console import Console

        console = Console()
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
  2  bad usage or input: an option, the config, the archive, a baseline made under other
     conditions
  3  no verdict (no decided verdict, more than --max-undecided undecided, no attack shared
     with the baseline) or a failure at run time (the target or the judge failed, a crash)

examples:
  sparring regress runs/my-run --against target.yaml --max-asr 0.05
  sparring regress attacks/archive.jsonl --config attacks/judge.yaml --against target.yaml \\
      --max-asr 0.05 --baseline attacks/last-release.json --out regress.json
"""


def add_commands(sub) -> None:
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
    add_seed(p, 1234, "target's keyed answers")
    add_batch_size(p, 16)
    add_json(p)
    add_quiet(p)
    p.set_defaults(func=_regress)
