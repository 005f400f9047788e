"""``sparring scan TARGET``: measure any model as it is, with no run and no training.

The target (a model folder, a target file for a served model, or ``openai:MODEL@URL``)
answers held-out harmful prompt sets (HarmBench's test split and StrongREJECT's held-out part
by default) and held-out benign prompts (``benign-test``), with evaluation's keyed sampling at
full length (:mod:`sparring.evaluation.evaluate`). Each answer is judged against the request
itself by the judge (``--judge``: a judge spec file; by default the rule-based refusal judge,
P(safe) = refused, helpful = not refused), by the evaluation judge when one is given, and by
garak's refusal detector; the result holds per set the attack success rate, the refusal rate,
*refused then complied*, the raters' pairwise agreement (Cohen's kappa), and over-refusal on
the benign prompts with the rise that many prompts could detect.

Writes ``scan.json``, ``samples.jsonl`` (every answer with its scores) and ``report.html`` to
``out`` (default ``scans/<target>``; a folder that holds a scan is never reused).
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparring.errors import ConfigError

SCHEMA = "sparring.scan/1"
DEFAULT_PROMPTS = ("harmbench-test", "strongreject-test")
DEFAULT_BENIGN = "benign-test"
#: the judge when none is given: rule-based (garak's strings and Sparring's patterns), no model
DEFAULT_JUDGE = {"type": "refusal", "p_safe": "refused", "name": "refusal-rule"}


def scan(
    target: str,
    *,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    benign: str | None = DEFAULT_BENIGN,
    judge: str | Path | dict | None = None,
    eval_judge: str | Path | dict | None = None,
    config: str | Path | None = None,
    samples: int | None = 100,
    answers: int = 1,
    max_new_tokens: int = 256,
    seed: int = 1234,
    out: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = False,
    write: bool = True,
) -> dict[str, Any]:
    """Scan ``target``; returns the result (written to ``out`` unless ``write`` is off).

    ``prompts`` are harmful prompt files or named sources, ``benign`` the benign ones (None: no
    over-refusal); ``samples`` prompts are drawn from each (None: all), each answered
    ``answers`` times at up to ``max_new_tokens`` tokens. ``judge`` / ``eval_judge``: judge
    specs (a YAML file or a mapping); ``config``: a run config whose defender settings (chat
    template, system prompt, generation) and judges are used where none is given here.
    """
    from sparring.config import DefenderConfig, load_config
    from sparring.evaluation.evaluate import (
        EvalPlan,
        _over_refusal,
        answer_sets,
        build_judges,
        judge_sets,
        load_prompt_file,
        pick,
        repeat,
    )
    from sparring.evaluation.players import endpoint_spend, free, load_player, target_source
    from sparring.judges import build_judge
    from sparring.judges.refusal import RefusalDetector
    from sparring.players.engine import make_accelerator
    from sparring.runs import first_free
    from sparring.runtime import Tasks, progress_bar, quiet_libraries

    quiet_libraries()
    if answers < 1:
        raise ConfigError(f"--answers must be at least 1 (got {answers})")
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples must be at least 1 (got {samples})")
    if not prompts and not benign:
        raise ConfigError("nothing to scan: give --prompts or --benign")
    cfg = load_config(config) if config is not None else None
    defender_cfg = cfg.defender if cfg is not None else DefenderConfig(model=str(target))
    source = target_source(str(target))
    if source.kind == "model" and not Path(target).is_dir():
        raise ConfigError(
            f"{target}: not a model folder, a target file (.yaml) nor openai:MODEL@URL"
        )
    j = _judge(judge, "--judge") if judge is not None else None
    ej = _judge(eval_judge, "--eval-judge") if eval_judge is not None else None
    if cfg is not None:
        j, ej = build_judges(cfg, j, ej)
    else:
        from sparring.judges.base import blocked_is_safe

        j, ej = blocked_is_safe(j or build_judge(DEFAULT_JUDGE)), blocked_is_safe(ej)
    refusal = RefusalDetector()  # before the model loads: a missing garak fails fast
    sets: dict[str, list[str]] = {}
    for p in prompts:
        key = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(p).stem if Path(p).exists() else p)
        sets[key] = repeat(pick(load_prompt_file(p), samples, seed), answers)
    benign_prompts = (
        repeat(pick(load_prompt_file(benign), samples, seed), answers) if benign else []
    )
    plan = EvalPlan(seed, [], [], sets, benign_prompts, {"source": benign} if benign else None)
    scans = Path("scans") / _label(source.label)  # a folder that holds a scan is never reused
    folder = Path(out) if out else first_free(scans, lambda f: (f / "scan.json").exists())
    t0 = time.perf_counter()
    acc = make_accelerator(cfg.accelerate) if cfg is not None else _cpu_or_gpu()
    with progress_bar(progress) as bar:
        player = load_player("defender", defender_cfg, acc, source)
        every = {**sets, **({"benign": benign_prompts} if benign_prompts else {})}
        responses, _, cut = answer_sets(
            player, every, plan, batch_size, (max_new_tokens, None), Tasks(bar), source.label
        )
        spent = endpoint_spend(player)
        free(player)
    benign_responses = responses.pop("benign", [])
    rows: list[dict[str, Any]] = []
    figures, agreement = judge_sets((j, ej, refusal), sets, responses, [], {}, rows)
    for key, entry in figures.items():
        entry["prompts_cut"] = cut.get(key)
    key = cfg.game.benign.score_key if cfg is not None and cfg.game.benign else "helpful"
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "target": str(target),
        "label": source.label,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seed": seed,
        "samples": samples,
        "answers": answers,
        "limits": cut.get("limits"),
        "judges": {
            "judge": j.name,
            "eval_judge": ej.name if ej is not None else None,
            "refusal": refusal.source,
        },
        "judged_on": "the request itself (each prompt is its own behaviour)",
        "sets": figures,
        "agreement": agreement,
        "over_refusal": _over_refusal(j, ej, benign_prompts, benign_responses, key, rows),
        "endpoint": spent,
        "seconds": None,
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if write:
        write_scan(folder, result, rows)
    return result


def _judge(spec: str | Path | dict, option: str):
    """A judge from a spec mapping or a YAML file holding one (or a run config's ``judge``)."""
    from sparring.judges import build_judge
    from sparring.judges.registry import judge_from_file

    return build_judge(spec) if isinstance(spec, dict) else judge_from_file(spec, option)


def _cpu_or_gpu():
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).name or text).strip("_") or "target"


def write_scan(folder: Path, result: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """``scan.json``, ``samples.jsonl`` and ``report.html`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "samples.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    result["folder"] = str(folder)
    path = folder / "scan.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "report.html").write_text(scan_html(result, rows), encoding="utf-8")
    return path


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def scan_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(set, answers, ASR judge, ASR eval judge, refusal rate, refused then complied) per set."""
    out = []
    for key, e in result["sets"].items():
        ev = e.get("eval_judge") or {}
        out.append(
            (
                key,
                str(e["n"]),
                _pct(e["judge"]["asr"]),
                _pct(ev.get("asr")),
                _pct(e.get("refusal_rate")),
                _pct(e.get("refused_then_complied")),
            )
        )
    return out


def scan_html(result: dict[str, Any], rows: list[dict[str, Any]], shown: int = 20) -> str:
    """One self-contained page: the figures per set, over-refusal, agreement, and the first
    answers judged unsafe (every text escaped)."""
    e = html.escape
    head = (
        "set",
        "answers",
        "ASR (judge)",
        "ASR (eval judge)",
        "refusal rate",
        "refused then complied",
    )
    table = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in scan_rows(result)
    )
    over = result.get("over_refusal") or {}
    over_txt = "not measured"
    if over.get("judge"):
        o = over["judge"]
        over_txt = (
            f"{_pct(o['rate'])} of {over['n_prompts']} benign prompts refused (a rise of "
            f"{_pct(o['mde_rise'])} was detectable)"
        )
    unsafe = [r for r in rows if r.get("set") != "benign" and (r.get("p_safe") or 1) < 0.5]
    samples = "".join(
        f"<tr><td>{e(r['set'])}</td><td>{e(r['prompt'])}</td><td>{e(r['response'])}</td></tr>"
        for r in unsafe[:shown]
    )
    judges = result["judges"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sparring scan: {e(result["label"])}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}td,th{{border:1px solid #ccc;
padding:4px;vertical-align:top}}table{{border-collapse:collapse}}</style></head><body>
<h1>sparring scan: {e(result["label"])}</h1>
<p>target {e(result["target"])}; judge {e(judges["judge"])}; eval judge
{e(str(judges["eval_judge"]))}; refusal detector {e(str(judges["refusal"]))};
{result["answers"]} answer(s) per prompt; {e(str(result["limits"]))}</p>
<h2>Harmful prompt sets</h2><table><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr>{table}
</table>
<h2>Over-refusal</h2><p>{e(over_txt)}</p>
<h2>Agreement between raters (Cohen's kappa)</h2><pre>{e(json.dumps(result["agreement"], indent=1))}</pre>
<h2>Answers judged unsafe (first {shown})</h2>
<table><tr><th>set</th><th>prompt</th><th>answer</th></tr>{samples}</table>
</body></html>
"""


# -- CLI -----------------------------------------------------------------------------------------
EXAMPLES = (
    "sparring scan runs/arena/final/defender --prompts arena:heldout_framings "
    "--benign arena:benign_unseen",
    "sparring scan ~/models/my-model --judge judge.yaml --samples 200",
    "sparring scan target.yaml --json          # a served model (key variable, system prompt)",
)


def _scan_command(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from sparring.cli_args import show_progress

    result = scan(
        args.target,
        prompts=args.prompts or DEFAULT_PROMPTS,
        benign=None if args.benign == "none" else args.benign,
        judge=args.judge,
        eval_judge=args.eval_judge,
        config=args.config,
        samples=args.samples,
        answers=args.answers,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        out=args.out,
        progress=show_progress(args),
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.quiet:
        return 0
    t = Table(title=f"sparring scan: {result['label']} (judge {result['judges']['judge']})")
    for col in ("set", "answers", "ASR judge", "ASR eval judge", "refusal", "refused+complied"):
        t.add_column(col, justify="left" if col == "set" else "right")
    for row in scan_rows(result):
        t.add_row(*row)
    console = Console()
    console.print(t)
    over = (result.get("over_refusal") or {}).get("judge")
    if over:
        console.print(
            f"over-refusal: {_pct(over['rate'])} (a rise of {_pct(over['mde_rise'])} detectable)"
        )
    console.print(f"wrote {result['folder']}/scan.json, samples.jsonl and report.html")
    return 0


def add_commands(sub) -> None:
    from sparring.cli_args import add_json, add_out, add_quiet, add_samples, add_seed, with_examples

    p = sub.add_parser(
        "scan",
        help="measure any model as it is (refusal, attack success, over-refusal, judge "
        "agreement) on held-out prompt sets; no run folder",
        description=__doc__.split("\n\n")[0],
        **with_examples(*EXAMPLES),
    )
    p.add_argument(
        "target",
        help="a model folder, a target file (.yaml) for a served model, or openai:MODEL@URL",
    )
    p.add_argument(
        "--prompts",
        action="append",
        metavar="SOURCE",
        help=f"a harmful prompt file or named source (repeatable; default: {', '.join(DEFAULT_PROMPTS)})",
    )
    p.add_argument(
        "--benign",
        default=DEFAULT_BENIGN,
        metavar="SOURCE",
        help=f"benign prompts for over-refusal (default {DEFAULT_BENIGN}; 'none': skip)",
    )
    p.add_argument("--judge", metavar="FILE", help="a judge spec (YAML; default: the refusal rule)")
    p.add_argument("--eval-judge", metavar="FILE", help="a second judge, shown the request")
    p.add_argument(
        "--config", metavar="FILE", help="a run config: its defender settings and judges"
    )
    add_samples(p, 100, "prompts drawn from each set")
    p.add_argument("--answers", type=int, default=1, help="answers per prompt (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="answer length (default 256)")
    add_seed(p, 1234, "prompt draw and the keyed answers")
    add_out(p, "output folder (default: the first free scans/<target>[-N])", metavar="DIR")
    add_json(p)
    add_quiet(p)
    p.set_defaults(func=_scan_command)
