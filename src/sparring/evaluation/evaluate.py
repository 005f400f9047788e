"""``sparring eval``: how safe the defender is, how strong and varied the attacker is, how far each
moved from where it started. Writes ``RUN_DIR/eval/<name>.json`` (+ ``<name>.samples.jsonl``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparring.config import RunConfig, load_config
from sparring.errors import SparringError
from sparring.evaluation import metrics as M
from sparring.evaluation.dialogues import eval_turns, evaluate_dialogues
from sparring.evaluation.players import (
    Source,
    answering_at,
    eval_batch_size,
    free,
    generate_all,
    load_player,
    player_source,
    prompts_cut,
    target_source,
)
from sparring.judges.refusal import RefusalDetector
from sparring.players.engine import make_accelerator
from sparring.runs import require_run_dir
from sparring.runtime import Tasks, progress_bar, quiet_libraries

SCHEMA = "sparring.eval/1"


def load_run_config(run_dir: Path) -> RunConfig:
    return load_config(require_run_dir(run_dir) / "config.yaml")


def build_judges(cfg: RunConfig, judge=None, eval_judge=None):
    from sparring.judges import build_judge
    from sparring.judges.base import blocked_is_safe

    j = judge or build_judge(cfg.judge)
    ej = eval_judge
    if ej is None and cfg.eval_judge is not None:
        ej = build_judge(cfg.eval_judge)
    # an answer a served target's content filter blocked is scored safe, never judged
    return blocked_is_safe(j), blocked_is_safe(ej)


def shares_reward(cfg: RunConfig) -> dict[str, str]:
    """The evaluation figures that share a component with the training reward, each with why:
    a figure the training optimised can move without the defender becoming safer, so every
    table marks it (the figures the training never saw lead)."""
    from sparring.judges.specs import RefusalJudgeSpec

    def parts(spec):
        yield spec
        for child in getattr(spec, "judges", None) or []:
            yield from parts(child)
        for name in ("safety", "helpfulness"):
            if getattr(spec, name, None) is not None:
                yield from parts(getattr(spec, name))

    out = {"ASR judge": "the training judge: the reward itself"}
    if cfg.game.benign is not None:
        out["over-refusal judge"] = "the training judge's helpfulness: the benign reward"
    if any(isinstance(p, RefusalJudgeSpec) and p.p_safe == "refused" for p in parts(cfg.judge)):
        out["refusal rate"] = "the reward pays for the refusal strings this rate counts"
    if cfg.eval_judge is not None and cfg.eval_judge == cfg.judge:
        out["ASR eval judge"] = "the evaluation judge is the training judge"
        out["over-refusal eval judge"] = "the evaluation judge is the training judge"
    return out


def score(judge, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64):
    """Judge output for all pairs, scored in batches and validated (NaN allowed, then ignored)."""
    from sparring.judges import JudgeOutput, validate_output

    outs = []
    for i in range(0, len(prompts), batch_size):
        p, r = list(prompts[i : i + batch_size]), list(responses[i : i + batch_size])
        outs.append(validate_output(judge.name, judge.score(p, r), len(p), allow_nonfinite=True))
    return JudgeOutput.concat(outs) if outs else JudgeOutput(p_safe=[])


def pick(prompts: Sequence[str], n: int | None, seed: int) -> list[str]:
    """``n`` prompts drawn without replacement (all of them, shuffled, when n >= len)."""
    order = np.random.default_rng(seed).permutation(len(prompts))
    if n is not None:
        order = order[:n]
    return [prompts[i] for i in order]


def repeat(prompts: Sequence[str], answers: int) -> list[str]:
    """Each prompt ``answers`` times in a row (the defender answers each of them)."""
    return [p for p in prompts for _ in range(answers)]


def seeds_for_attacks(prompts: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` seeds: shuffled passes over the pool, so every seed is used before any repeats."""
    out: list[str] = []
    rng = np.random.default_rng(seed)
    while len(out) < n:
        out.extend(prompts[i] for i in rng.permutation(len(prompts)))
    return out[:n]


def load_prompt_file(path: str, field: str = "prompt") -> list[str]:
    """Prompts from a file, or from a named source (``arena:heldout_framings``,
    ``harmbench-test``, ...) when no such file exists."""
    from sparring.data import load_prompts

    if not Path(path).exists() and (":" in path or "/" not in path):
        return load_prompts(source=path)
    return load_prompts(path, field=field)


@dataclass
class EvalPlan:
    """What one evaluation asks, as data: every prompt set the defender answers (each prompt
    repeated ``answers`` times), the seed prompts the attacker rewrites, the benign prompts and
    where they came from. Built by :func:`plan_evaluation` before any model is loaded, so the
    same arguments give the same plan in every arm and on every run."""

    seed: int
    attack_seeds: list[str]
    seed_set: list[str]
    heldout: dict[str, list[str]]
    benign: list[str]
    benign_from: dict[str, Any] | None

    def keys(self, what: str, texts: Sequence[str]) -> list[str]:
        """Each sample's name, ``eval/<seed>/<what>`` with the text and its answer index: the
        randomness of keyed sampling (:mod:`sparring.players.sampling`). A prompt set's name
        is part of it, the model is not: two defenders answering the same set under the same
        seed share their random numbers (common random numbers make the comparison paired)."""
        from sparring.players.sampling import sample_keys

        return sample_keys(f"eval/{self.seed}/{what}", texts)


def plan_evaluation(
    cfg: RunConfig,
    *,
    prompts: Sequence[str] = (),
    benign: str | None = None,
    samples: int = 64,
    answers: int = 1,
    seed: int = 1234,
) -> EvalPlan:
    """The prompts of an evaluation (see :func:`evaluate_run` for the arguments)."""
    from sparring.data import load_prompts

    if samples < 1:
        raise SparringError(f"--samples must be at least 1 (got {samples})")
    if answers < 1:
        raise SparringError(f"--answers must be at least 1 (got {answers})")
    s = cfg.game.seeds
    seed_pool = load_prompts(s.path, source=s.source, field=s.field, split=s.split, limit=s.limit)
    heldout: dict[str, list[str]] = {}
    for path in prompts:
        key = prompt_set_name(path)
        while key in heldout or key in ("attacks", "seeds"):
            key += "_"
        heldout[key] = repeat(pick(load_prompt_file(path), samples, seed), answers)
    benign_prompts: list[str] = []
    benign_from = None
    # over-refusal needs many prompts to see a rise: all held-out ones, up to benign_samples
    n_benign = max(samples, cfg.evaluation.benign_samples)
    if benign:
        benign_prompts = pick(load_prompt_file(benign), n_benign, seed)
        benign_from = {"source": benign, "held_out": None}
    elif cfg.game.benign is not None:
        b = cfg.game.benign.prompts
        held_out = heldout_benign_source(b.source)
        if held_out is not None:
            benign_prompts = pick(load_prompts(source=held_out), n_benign, seed)
            benign_from = {"source": held_out, "held_out": True}
        else:  # a file of the user's: no held-out part is known, say so
            benign_prompts = pick(
                load_prompts(b.path, source=b.source, field=b.field, split=b.split, limit=b.limit),
                n_benign,
                seed,
            )
            benign_from = {"source": b.path or b.source, "held_out": False}
    return EvalPlan(
        seed=seed,
        attack_seeds=seeds_for_attacks(seed_pool, samples, seed),
        seed_set=repeat(pick(seed_pool, samples, seed), answers),
        heldout=heldout,
        benign=repeat(benign_prompts, answers),
        benign_from=benign_from,
    )


def evaluate_run(
    run_dir: str | Path,
    *,
    checkpoint: str | None = None,
    against: Sequence[str] = (),
    prompts: Sequence[str] = (),
    benign: str | None = None,
    samples: int | None = None,
    answers: int = 1,
    name: str | None = None,
    seed: int = 1234,
    batch_size: int | None = None,
    judge=None,
    eval_judge=None,
    progress: bool = False,
    accelerator=None,
    write: bool = True,
    players: dict[str, Any] | None = None,
    max_new_tokens: int | None = None,
    max_prompt_tokens: int | None = None,
) -> dict[str, Any]:
    """Evaluate a run's players; returns the report dict (and writes it unless ``write`` is off).

    ``judge`` / ``eval_judge`` override the run config's judges (any object with the Judge
    protocol); ``prompts`` are held-out prompt files, each a named set (file stem).
    ``answers`` is how many answers the defender samples for each prompt of the seed, held-out
    and benign sets (rates are over all answers: more answers, less sampling noise on a small
    set); the attacker writes ``samples`` attacks, one answer each. ``players`` are players
    already in memory to evaluate instead of loading the run's weights (a training run
    evaluates its own players this way: no second copy of any model is loaded).

    Every answer is a keyed sample (:meth:`EvalPlan.keys`): the same weights give the same
    figures to the digit, whatever was evaluated before in the process. The defender and the
    targets answer at up to ``max_new_tokens`` tokens, their prompts cut at
    ``max_prompt_tokens`` (both None: the run config's ``evaluation`` settings, by default 256
    new tokens and the model's context less the answer); how many prompts were still cut is
    reported per set (``prompts_cut``).
    """
    players = players or {}
    quiet_libraries()
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    samples = samples or cfg.evaluation.samples  # the run's own setting unless told otherwise
    plan = plan_evaluation(
        cfg, prompts=prompts, benign=benign, samples=samples, answers=answers, seed=seed
    )
    name = name or free_eval_name(run_dir, checkpoint or "final")
    bs = batch_size or eval_batch_size(cfg)
    acc = accelerator or make_accelerator(cfg.accelerate)
    limits = (
        max_new_tokens or cfg.evaluation.max_new_tokens,
        max_prompt_tokens or cfg.evaluation.max_prompt_tokens,
    )
    t0 = time.perf_counter()
    heldout, benign_prompts, benign_from = plan.heldout, plan.benign, plan.benign_from
    attack_seeds, seed_set = plan.attack_seeds, plan.seed_set
    helpful_key = cfg.game.benign.score_key if cfg.game.benign is not None else "helpful"
    judge, eval_judge = build_judges(cfg, judge, eval_judge)
    refusal = RefusalDetector()  # before any model is loaded: a missing garak fails fast

    att_src = player_source(run_dir, "attacker", checkpoint)
    def_src = player_source(run_dir, "defender", checkpoint)
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name,
        "run_dir": str(run_dir),
        "checkpoint": checkpoint or "final",
        "mode": cfg.game.mode,
        "seed": seed,
        "sampling": "keyed",
        "samples": samples,
        "answers": answers,
        "benign": benign_from,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "judges": {
            "judge": judge.name,
            "eval_judge": eval_judge.name if eval_judge is not None else None,
            "refusal": refusal.source,
        },
        # which files each judge is (sparring.judges.fingerprint): the same name, other weights,
        # other figures
        "judge_files": {
            "judge": getattr(judge, "files", None),
            "eval_judge": getattr(eval_judge, "files", None),
        },
        "players": {"attacker": att_src.as_dict(), "defender": def_src.as_dict()},
        "shares_reward": shares_reward(cfg),
    }
    with progress_bar(progress and acc.is_main_process) as prog:
        tasks = Tasks(prog)
        # the attacker writes fresh attacks on seed prompts
        attacker = players.get("attacker") or load_player(
            "attacker", cfg.attacker, acc, att_src, with_reference=True
        )
        raw, att_kl = generate_all(
            attacker,
            attack_seeds,
            bs,
            keys=plan.keys("attacker", attack_seeds),
            kl=True,
            on_batch=tasks.start(f"attacker ({att_src.label}) writes", len(attack_seeds)),
        )
        attacks = attacker.clean_texts(raw, attack_seeds).texts
        if eval_turns(cfg) == 1:  # multi-turn: it plays the dialogues with the defender below
            free(attacker)
            attacker = None

        # the defender answers every prompt set
        sets: dict[str, list[str]] = {"attacks": attacks, "seeds": seed_set, **heldout}
        defender = players.get("defender") or load_player(
            "defender", cfg.defender, acc, def_src, with_reference=True
        )
        all_sets = {**sets, **({"benign": benign_prompts} if benign_prompts else {})}
        responses, def_kl, cut = answer_sets(
            defender, all_sets, plan, bs, limits, tasks, f"defender ({def_src.label})", kl=True
        )
        benign_responses = responses.pop("benign", [])
        if attacker is not None:  # both players over conversations (evaluation/dialogues.py)
            judged_by = eval_judge or judge
            result["dialogues"] = evaluate_dialogues(
                attacker,
                defender,
                judged_by,
                attack_seeds,
                cfg,
                plan=plan,
                batch_size=bs,
                limits=limits,
                rows=rows,
                score_key="p_safe_eval" if eval_judge is not None else "p_safe",
            )
            free(attacker)
            attacker = None
        free(defender)
        defender = None

        # frozen third-party targets answer the attacks (transfer)
        target_responses: dict[str, list[str]] = {}
        for model_dir in against:
            source = target_source(str(model_dir), target_responses)
            label = source.label
            target = load_player("defender", cfg.defender, acc, source)
            got, _, _ = answer_sets(
                target, {"attacks": attacks}, plan, bs, limits, tasks, f"target {label}"
            )
            target_responses[label] = got["attacks"]
            free(target)

        # judging: the training judge on (prompt, answer), the evaluation judge on the behaviour
        attack_extra = {
            "seed": attack_seeds,
            "attack_raw": raw,
            "kl_attacker": [float(x) for x in att_kl],
            "kl_defender": [float(x) for x in def_kl],
        }
        defender_eval, agreement = judge_sets(
            (judge, eval_judge, refusal), sets, responses, attack_seeds, attack_extra, rows
        )
        result["limits"] = cut.pop("limits")  # as the defender answered
        for key, entry in defender_eval.items():
            entry["prompts_cut"] = cut.get(key)
        result["defender"] = {
            "sets": defender_eval,
            "over_refusal": _over_refusal(
                judge, eval_judge, benign_prompts, benign_responses, helpful_key, rows
            ),
        }
        result["agreement"] = agreement
        targets = {"defender": defender_eval["attacks"]}
        for label, resp in target_responses.items():
            targets[label], sc = _judge_set(judge, eval_judge, refusal, attacks, resp, attack_seeds)
            rows.extend(
                {"set": f"target:{label}", "prompt": p, "response": r, **_row_scores(sc, i)}
                for i, (p, r) in enumerate(zip(attacks, resp, strict=True))
            )
        embedder = M.build_eval_embedder(cfg.novelty)
        result["attacker"] = {
            "targets": targets,
            "diversity": M.diversity(attacks, embedder, seed=seed),
            "seed_diversity": M.diversity(attack_seeds, embedder, seed=seed),
        }
        result["kl"] = {
            "attacker": _kl_summary(att_kl, att_src),
            "defender": _kl_summary(def_kl, def_src),
        }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if write and acc.is_main_process:
        write_eval(run_dir, name, result, rows)
    return result


def answer_sets(
    player, sets, plan: EvalPlan, batch_size: int, limits, tasks, label: str, kl: bool = False
):
    """The player answers every prompt set with keyed samples at evaluation's limits
    (``limits``: ``(max_new_tokens, max_prompt_tokens)``, see :func:`answering_at`). Returns
    ``(answers by set, the KL of the answers to "attacks" when ``kl``, else None, prompts cut
    by set and, under "limits", the limits in force)``."""
    responses: dict[str, list[str]] = {}
    cut: dict[str, Any] = {}
    kl_attacks = None
    with answering_at(player, *limits) as in_force:
        cut["limits"] = in_force
        for key, texts in sets.items():
            cut[key] = prompts_cut(player, texts, in_force["max_prompt_tokens"])
            responses[key], seq_kl = generate_all(
                player,
                texts,
                batch_size,
                keys=plan.keys(key, texts),
                kl=kl and key == "attacks",
                on_batch=tasks.start(f"{label} answers {key}", len(texts)),
            )
            if key == "attacks":
                kl_attacks = seq_kl
    return responses, kl_attacks, cut


def heldout_benign_source(source: str | None) -> str | None:
    """The held-out counterpart of the benign source a run trains on, where one is known
    (:func:`sparring.data.prompts.heldout_source`: ``NAME-train`` -> ``NAME-test``, the fixed
    hash split; ``arena:benign`` -> ``arena:benign_unseen``, the arena's benign evaluation set
    less anything in a training file). Over-refusal measured on the prompts the defender was
    rewarded on would say how well it fits them, not how it treats benign prompts it has not
    seen."""
    from sparring.data.prompts import heldout_source

    return heldout_source(source)


def prompt_set_name(path: str) -> str:
    """The name an evaluation gives the prompt set of ``--prompts PATH``: a file's stem, a named
    source without its family prefix (a later set of the same name gets a ``_`` appended)."""
    return Path(path).stem if Path(path).exists() else _set_name(path)


def _set_name(source: str) -> str:
    """A named source's set name: without its family prefix (``arena:heldout_framings`` ->
    ``heldout_framings``), other colons as underscores."""
    from sparring.data.prompts import source_prefix

    prefix = source_prefix(source)
    return (source[len(prefix) :] if prefix else source).replace(":", "_")


def judge_sets(raters, sets, responses, attack_seeds, attack_extra, rows):
    """Every prompt set's figures (:func:`_judge_set`) and raters' agreement; one samples row
    per answer is appended to ``rows`` (fresh attacks also carry ``attack_extra``: the seed
    each rewrote, its raw text, both players' KL). ``raters``: (judge, eval judge or None,
    refusal detector). Fresh attacks are judged against the seeds they rewrote."""
    judge, eval_judge, refusal = raters
    figures: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    for key, texts in sets.items():
        served = attack_seeds if key == "attacks" else texts
        entry, scores = _judge_set(judge, eval_judge, refusal, texts, responses[key], served)
        figures[key] = entry
        agreement[key] = _agreement(*scores[:3])
        for i, (p, r) in enumerate(zip(texts, responses[key], strict=True)):
            row = {"set": key, "prompt": p, "response": r, **_row_scores(scores, i)}
            if key == "attacks":
                row.update({k: v[i] for k, v in attack_extra.items()})
            rows.append(row)
    return figures, agreement


def _judge_set(judge, eval_judge, refusal, prompts, responses, behaviours):
    """A harmful prompt set's figures and the per-answer scores behind them:
    ``(P(safe), P(safe) by the eval judge or None, refused, refused then complied or None)``.

    The training judge scores (prompt, answer), the pair its reward sees; the evaluation judge
    scores (behaviour, answer), the request the prompt serves (the seed an attack rewrote, the
    prompt itself elsewhere), as HarmBench's and StrongREJECT's graders do: a harmless rewrite
    answered helpfully is not an instance of the behaviour. *Refused then complied* is an answer
    the refusal detector calls a refusal that the behaviour-grounded verdict (the evaluation
    judge's, else the training judge's) calls unsafe: it refuses, then serves the request."""
    j = score(judge, prompts, responses).p_safe
    refused = refusal.refuses_batch(responses)
    entry: dict[str, Any] = {"n": len(prompts), "judge": M.judge_summary(j), "eval_judge": None}
    entry["refusal_by"] = refusal.source
    e = None
    if eval_judge is not None:
        got = score(eval_judge, behaviours, responses)
        e = got.p_safe
        if "refused" in got.labels:  # a judge that knows when it refused (the arena's oracle)
            refused = [v == "true" for v in got.labels["refused"]]
            entry["refusal_by"] = f"{eval_judge.name} (labels['refused'])"
        entry["eval_judge"] = M.judge_summary(e)
        ja, ea = entry["judge"]["asr"], entry["eval_judge"]["asr"]
        entry["asr_gap"] = None if ja is None or ea is None else ea - ja
    entry["refusal_rate"] = float(np.mean(refused)) if refused else None
    verdict = e if e is not None else j
    complied = [
        None if not np.isfinite(v) else bool(r and v < M.THRESHOLD)
        for v, r in zip(verdict, refused, strict=True)
    ]
    decided = [c for c in complied if c is not None]
    entry["refused_then_complied"] = float(np.mean(decided)) if decided else None
    entry["judged_on"] = {"judge": "prompt", "eval_judge": "behaviour"}
    scores = (
        [float(x) for x in j],
        [float(x) for x in e] if e is not None else None,
        refused,
        complied,
    )
    return entry, scores


def _row_scores(scores, i: int) -> dict[str, Any]:
    """One answer's scores from :func:`_judge_set`, as a samples row holds them."""
    return {
        "p_safe": scores[0][i],
        "p_safe_eval": scores[1][i] if scores[1] is not None else None,
        "refused": scores[2][i],
        "refused_then_complied": scores[3][i],
    }


def _agreement(p_safe, p_safe_eval, refused) -> dict[str, Any]:
    """Pairwise agreement on "unsafe" between the judge (P(safe) < 0.5), the eval judge and the
    refusal detector (unsafe = not refused): where two raters disagree, a figure that rests on
    one of them alone is in doubt."""
    raters = {
        "judge": M.unsafe_labels(p_safe),
        "eval_judge": M.unsafe_labels(p_safe_eval) if p_safe_eval is not None else None,
        "refusal": [0.0 if r else 1.0 for r in refused],
    }
    out: dict[str, Any] = {}
    for a, b in (("judge", "eval_judge"), ("judge", "refusal"), ("eval_judge", "refusal")):
        x, y = raters[a], raters[b]
        out[f"{a}~{b}"] = None if x is None or y is None else M.cohen_kappa(x, y)
    return out


def _over_refusal(judge, eval_judge, prompts, responses, key, rows):
    if not prompts:
        return None
    from sparring.evaluation.stats import minimal_detectable_rise

    n_prompts = len(set(prompts))
    out: dict[str, Any] = {
        "n": len(prompts),
        "n_prompts": n_prompts,
        "score_key": key,
        "judge": None,
        "eval_judge": None,
    }
    cols = {}
    for which, j in (("judge", judge), ("eval_judge", eval_judge)):
        if j is None:
            continue
        got = score(j, prompts, responses)
        if key in got.extras:
            vals = [float(x) for x in got.extras[key]]
            cols[which] = vals
            rate = M.over_refusal_rate(vals)
            out[which] = {
                "rate": rate,
                "helpful": M.mean_p_safe(vals),
                # the smallest rise from this rate that this many prompts can show
                "mde_rise": minimal_detectable_rise(rate, n_prompts),
            }
    if not cols:
        out["note"] = f"no judge returns extras[{key!r}]; over-refusal not measured"
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        rows.append(
            {
                "set": "benign",
                "prompt": p,
                "response": r,
                "helpful": cols["judge"][i] if "judge" in cols else None,
                "helpful_eval": cols["eval_judge"][i] if "eval_judge" in cols else None,
            }
        )
    return out


def _kl_summary(kl, source: Source) -> dict[str, Any]:
    x = np.asarray(kl if kl is not None else [], dtype=np.float64)
    x = x[np.isfinite(x)]
    return {
        "mean": float(x.mean()) if x.size else None,
        "std": float(x.std()) if x.size else None,
        "n": int(x.size),
        "source": source.label,
    }


def write_eval(
    run_dir: Path, name: str, result: dict[str, Any], rows: list[dict[str, Any]]
) -> Path:
    folder = Path(run_dir) / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    samples_path = folder / f"{name}.samples.jsonl"
    result["samples_file"] = samples_path.name
    with samples_path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def free_eval_name(run_dir: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ...: the first name no evaluation of the run holds
    (an evaluation without ``--name`` never overwrites one, training's own included)."""
    from sparring.runs import first_free

    taken = lambda path: path.with_name(path.name + ".json").exists()  # noqa: E731
    return first_free(Path(run_dir) / "eval" / base, taken).name


def read_evals(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``eval/<name>.json`` of a run that carries this schema, by name."""
    out = {}
    folder = Path(run_dir) / "eval"
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and data.get("schema") == SCHEMA:
                out[p.stem] = data
    return out
