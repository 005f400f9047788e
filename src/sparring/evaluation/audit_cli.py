"""The ``sparring audit`` command: write a labelling sheet (:mod:`sparring.evaluation.audit`)
or score a person's exported labels (:mod:`sparring.evaluation.audit_score`)."""

from __future__ import annotations

import json
from pathlib import Path

from sparring.errors import ConfigError
from sparring.evaluation.audit import build_answers_sheet, build_sheet


def _audit_command(args) -> int:
    from rich.console import Console

    console = Console()
    if args.run == "score":
        if not args.labels:
            raise ConfigError("sparring audit score: expected the exported labels file (LABELS)")
        from sparring.evaluation.audit_score import score_audit, score_tables
        from sparring.judges.registry import judge_from_file

        judges = [(Path(f).stem, judge_from_file(f, "--judge")) for f in args.judge or ()]
        result = score_audit(args.labels, key=args.key, judges=judges, a_better=args.a_better)
        out = Path(args.out) if args.out else Path(args.labels).with_name("audit-score.json")
        out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            for table in score_tables(result):
                console.print(table)
            console.print(
                f"{result['labelled']} of {result['on_sheet']} items labelled; wrote {out}"
            )
        return 0
    if args.labels:
        raise ConfigError(f"sparring audit: unexpected {args.labels!r} after the run folder")
    if (args.run is None) == (args.answers is None):
        raise ConfigError("sparring audit: give a run folder, or --answers FILE (not both)")
    sets = [s for v in args.sets or () for s in v.split(",") if s]
    if args.answers:
        if not args.out:
            raise ConfigError("sparring audit --answers: give --out DIR for the sheet")
        folder = build_answers_sheet(
            args.answers, split=args.split, samples=args.samples, seed=args.seed, out=args.out
        )
    else:
        folder = build_sheet(
            args.run,
            before=args.before,
            after=args.after,
            sets=sets or None,
            samples=args.samples,
            seed=args.seed,
            pairwise=args.pairwise,
            out=args.out,
        )
    console.print(
        f"wrote {folder / 'sheet.html'} (give this page to the labeller) and "
        f"{folder / 'key.json'} (keep it from them); then: sparring audit score LABELS.json"
    )
    return 0


def add_commands(sub) -> None:
    from sparring.cli_args import (
        add_a_better,
        add_json,
        add_out,
        add_quiet,
        add_samples,
        add_seed,
        with_examples,
    )
    from sparring.evaluation.audit import __doc__ as audit_doc

    p = sub.add_parser(
        "audit",
        help="a blind labelling sheet of a run's answers for a person (HTML), and the person's "
        "labels scored against the judges",
        description=audit_doc.split("\n\n")[0],
        **with_examples(
            "sparring audit runs/smollm2                       # writes runs/smollm2/audit/sheet/",
            "sparring audit runs/smollm2 --sets harmbench-test,benign --samples 100",
            "sparring audit runs/smollm2 --pairwise --samples 50   # benign answers side by side",
            "sparring audit score labels-3f9c2a1b7e04.json      # kappa of each judge, ASR before/after",
        ),
    )
    p.add_argument("run", nargs="?", metavar="RUN_DIR | score", help="the run to audit, or 'score'")
    p.add_argument(
        "--answers",
        metavar="FILE",
        help="instead of a run: an answers file (sparring judge-data's), to measure candidate "
        "judges and its labelling rules against a person",
    )
    p.add_argument("--split", default="test", help="with --answers: the split (default test)")
    p.add_argument("labels", nargs="?", metavar="LABELS", help="with 'score': the exported labels")
    p.add_argument("--before", default="start", help="evaluation before training (default start)")
    p.add_argument("--after", default="final", help="evaluation after training (default final)")
    p.add_argument(
        "--sets", action="append", metavar="SET[,SET]", help="prompt sets (default: all)"
    )
    add_samples(p, 60, "requests drawn (each answered before and after)")
    add_seed(p, 0, "draw and order of the sheet")
    p.add_argument(
        "--pairwise",
        action="store_true",
        help="both answers to a request side by side: which is more helpful (benign sets by "
        "default)",
    )
    p.add_argument("--key", metavar="FILE", help="with 'score': the sheet's key.json")
    p.add_argument(
        "--judge",
        action="append",
        metavar="FILE",
        help="with 'score': a candidate judge spec (YAML) to measure against the person too, "
        "shown each request (repeatable; named by its file); on a pairwise sheet, a quality "
        "judge shown both answers",
    )
    add_a_better(p, "pairwise sheet's --judge")
    add_out(p, "sheet folder (default RUN/audit/sheet[-N]); with 'score', the score file")
    add_json(p)
    add_quiet(p)
    p.set_defaults(func=_audit_command)
