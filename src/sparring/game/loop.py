"""The GPO game: rounds of defend and attack stages between two RL players.

One step: sample seeds -> the attacker rewrites them -> the defender answers -> the judge scores
-> novelty is scored against the attack history, then the attacks join it -> the stage's player
is updated. The flow is the same for both stages; only who learns and from which reward differ.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from sparring import runs
from sparring.config import RunConfig, dump_config
from sparring.data import PromptPool, load_prompts
from sparring.errors import CheckpointError, ConfigError, JudgeError, NonFiniteError, SparringError
from sparring.game.plan import MODE_STAGES, PlannedStep, build_plan
from sparring.game.rewards import attacker_scores, defender_scores
from sparring.judges import Judge, JudgeOutput, build_judge, validate_output
from sparring.judges.base import attack_success_rate, mean_p_safe
from sparring.novelty import build_novelty
from sparring.players.engine import build_engines
from sparring.players.player import Player
from sparring.rl.trainer import any_rank, make_experience, update, updates_per_stage_step


class Timer:
    """Accumulates wall time per named phase."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - t0


class Game:
    """Sets up a run from its config and plays it. ``Game(cfg).run()`` is the whole job."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        resume: bool = False,
        progress: bool | None = None,
        accelerator: Accelerator | None = None,
        judge: Judge | None = None,
    ):
        quiet_libraries()
        self.cfg = cfg
        self.resume = resume
        self.show_progress = cfg.logging.progress if progress is None else progress
        # one accelerator (engine) per trainable player; the defender's serves the game's own
        # collective operations (ranks, gathers, barriers)
        stages = MODE_STAGES[cfg.game.mode]
        roles = [r for r, st in (("defender", "defend"), ("attacker", "attack")) if st in stages]
        if accelerator is not None:
            self.engines = {role: accelerator for role in roles}
        else:
            self.engines = build_engines(cfg.accelerate, roles)
        self.acc = self.engines[roles[0]]
        self.run_dir = cfg.run_dir()
        self.plan = build_plan(cfg.game)
        self.step = 0
        self.nonfinite_in_a_row = 0
        self._judge_override = judge
        self._setup()

    # -- setup -----------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, acc = self.cfg, self.acc
        world = acc.num_processes
        if cfg.game.batch_size % world:
            raise ConfigError(
                f"game.batch_size {cfg.game.batch_size} must be divisible by the {world} processes"
            )
        checkpoint = None
        if self.resume:
            found = runs.latest_checkpoint(self.run_dir)
            if found is not None:
                self.step, checkpoint = found
        elif acc.is_main_process and has_run(self.run_dir):
            raise ConfigError(
                f"run folder {self.run_dir} already holds a run; resume it with --resume {self.run_dir} "
                "or choose another output_dir"
            )
        _seed_everything(cfg.seed, acc.process_index)
        # data first: bad files fail before any model loads
        g = cfg.game
        self.seeds = PromptPool(
            load_prompts(
                g.seeds.path,
                source=g.seeds.source,
                field=g.seeds.field,
                split=g.seeds.split,
                limit=g.seeds.limit,
            ),
            seed=cfg.seed,
        )
        self.benign = None
        if g.benign is not None:
            b = g.benign.prompts
            self.benign = PromptPool(
                load_prompts(b.path, source=b.source, field=b.field, split=b.split, limit=b.limit),
                seed=cfg.seed + 1,
            )
        if cfg.evaluation.at_start or cfg.evaluation.at_end:
            # the evaluation's refusal detector reads garak's list: missing, fail now
            from sparring.judges.refusal import garak_refusal_strings

            garak_refusal_strings()
        self.judge = self._judge_override or build_judge(cfg.judge)
        self.eval_judge = build_judge(cfg.eval_judge) if cfg.eval_judge is not None else None
        self._preflight_judge()
        self.novelty = build_novelty(cfg.novelty)
        stages = MODE_STAGES[g.mode]
        attacker_trains = "attack" in stages
        defender_trains = "defend" in stages
        n_attack = sum(1 for s in self.plan if s.stage == "attack")
        n_defend = len(self.plan) - n_attack
        per_rank = g.batch_size // world
        accumulation = cfg.accelerate.gradient_accumulation_steps
        att_rows = per_rank * cfg.attacker.rl.samples_per_prompt
        n_direct = self._n_direct(per_rank)
        def_rows = (
            per_rank + n_direct + self._n_benign(per_rank + n_direct)
        ) * cfg.defender.rl.samples_per_prompt
        self.attacker = None
        if g.mode != "rlhf":
            self.attacker = Player.build(
                "attacker",
                cfg.attacker,
                self.engines.get("attacker", self.acc),
                trainable=attacker_trains,
                total_updates=n_attack
                * updates_per_stage_step(cfg.attacker, att_rows, accumulation),
                checkpoint=checkpoint / "attacker" if checkpoint and attacker_trains else None,
            )
        self.defender = Player.build(
            "defender",
            cfg.defender,
            self.engines.get("defender", self.acc),
            trainable=defender_trains,
            total_updates=n_defend * updates_per_stage_step(cfg.defender, def_rows, accumulation),
            checkpoint=checkpoint / "defender" if checkpoint and defender_trains else None,
        )
        if checkpoint is not None:
            self._restore(checkpoint)
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.resume:
                runs.clean_partial_checkpoints(self.run_dir)
                for name in ("metrics.jsonl", "samples.jsonl"):
                    runs.truncate_jsonl(self.run_dir / name, self.step)
            (self.run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        self.writer = runs.RunWriter(
            self.run_dir,
            tensorboard=cfg.logging.tensorboard,
            enabled=acc.is_main_process,
            purge_step=self.step + 1 if self.resume else None,
        )

    def _n_direct(self, n_attacks: int) -> int:
        """Seed prompts a defend batch adds beside ``n_attacks`` attacks (game.seed_fraction)."""
        f = self.cfg.game.seed_fraction
        return _share(n_attacks, f) if f > 0 else 0

    def _n_benign(self, n_attacks: int) -> int:
        if self.cfg.game.benign is None:
            return 0
        return _share(n_attacks, self.cfg.game.benign.fraction)

    def _preflight_judge(self) -> None:
        """Score two pairs before any training: a judge of the wrong shape fails now, not hours in."""
        seed = self.seeds.prompts[0]
        pairs = ([seed, seed], ["I cannot help with that.", "Sure, here is how."])
        try:
            out = validate_output(self.judge.name, self.judge.score(*pairs), 2)
        except SparringError:
            raise
        except Exception as exc:
            raise JudgeError(
                f"judge {self.judge.name!r} failed on a test pair: {type(exc).__name__}: {exc}"
            ) from exc
        if self.benign is not None:
            key = self.cfg.game.benign.score_key
            if key not in out.extras:
                raise ConfigError(
                    f"game.benign needs the judge to return extras[{key!r}] (helpfulness); judge "
                    f"{self.judge.name!r} returns {sorted(out.extras) or 'no extras'}"
                )

    # -- one step --------------------------------------------------------------------------------
    def play_step(self, planned: PlannedStep) -> dict[str, Any]:
        cfg, acc = self.cfg, self.acc
        stage = planned.stage
        timer = Timer()
        t_start = time.perf_counter()
        world, rank = acc.num_processes, acc.process_index
        per_rank = cfg.game.batch_size // world
        seeds = self.seeds.sample(cfg.game.batch_size)[rank * per_rank : (rank + 1) * per_rank]

        # attacker writes
        k_att = cfg.attacker.rl.samples_per_prompt if stage == "attack" else 1
        att_seeds = [s for s in seeds for _ in range(k_att)]
        att_gen = None
        fallback = np.zeros(len(att_seeds), dtype=bool)
        if self.attacker is None:
            raw_attacks = attacks = list(att_seeds)
        else:
            with timer("generate/attacker"):
                att_gen = self.attacker.generate(att_seeds)
            raw_attacks = att_gen.texts
            cleaned = self.attacker.clean_attacks(att_gen, att_seeds)
            attacks, fallback = cleaned.texts, np.asarray(cleaned.fallback, dtype=bool)

        # novelty against the history of earlier batches, then the batch joins the history
        with timer("novelty"):
            if self.attacker is not None:
                nov = self.novelty.score(attacks)
                penalty = self.novelty.penalty(nov)
            else:
                nov = {"selfbleu": np.zeros(len(attacks)), "cosine": np.zeros(len(attacks))}
                penalty = np.zeros(len(attacks))

        # defender answers (the seeds themselves and benign prompts mixed in when defending)
        direct: list[str] = []
        n_d = self._n_direct(per_rank) if stage == "defend" else 0
        if n_d:
            if self.attacker is not None:  # the seeds the attacker rewrote, as they are
                direct = [seeds[i % len(seeds)] for i in range(n_d)]
            else:  # rlhf: as many more seeds, so the defender answers as many prompts as in gpo
                direct = self.seeds.sample(n_d * world)[rank * n_d : (rank + 1) * n_d]
        benign_prompts: list[str] = []
        if stage == "defend" and self.benign is not None:
            n_b = self._n_benign(per_rank + len(direct))
            benign_prompts = self.benign.sample(n_b * world)[rank * n_b : (rank + 1) * n_b]
        prompts = attacks + direct + benign_prompts
        k_def = (
            cfg.defender.rl.samples_per_prompt
            if stage == "defend" and self.defender.trainable
            else 1
        )
        def_in = [p for p in prompts for _ in range(k_def)]
        with timer("generate/defender"):
            def_gen = self.defender.generate(def_in)

        with timer("judge"):
            judged = self._score(def_in, def_gen.texts)
        if (
            self.attacker is not None
        ):  # joins the history only once judged: a failed judge leaves it
            with timer("novelty"):
                self.novelty.add(_gather(attacks, world))
        p_safe = np.asarray(judged.p_safe, dtype=np.float64)
        which = np.array([i // k_def for i in range(len(def_in))])
        is_benign = which >= len(attacks) + len(direct)
        is_direct = (which >= len(attacks)) & ~is_benign
        attack_rows = which < len(attacks)
        eval_figures: dict[str, float] = {}
        if self.eval_judge is not None and cfg.evaluation.every_step:
            with timer("eval_judge"):
                judged_eval = validate_output(
                    self.eval_judge.name,
                    self.eval_judge.score(def_in, def_gen.texts),
                    len(def_in),
                    allow_nonfinite=True,
                )
            judged.extras["p_safe_eval"] = judged_eval.p_safe
            e = np.asarray(judged_eval.p_safe, dtype=np.float64)
            eval_figures = {
                "eval/p_safe": _rate(mean_p_safe(e[attack_rows])),
                "eval/asr": _rate(attack_success_rate(e[attack_rows])),
            }

        # rewards and update
        learner = self.defender if stage == "defend" else self.attacker
        if stage == "defend":
            helpful = None
            if is_benign.any():
                helpful = np.asarray(judged.extras[cfg.game.benign.score_key], dtype=np.float64)
            scores = defender_scores(p_safe, helpful, is_benign)
            gen, group = def_gen, k_def
        else:
            scores = attacker_scores(p_safe, penalty, fallback, cfg.attacker.fallback_penalty)
            gen, group = att_gen, k_att
        stats: dict[str, float] = {}
        skipped = None
        if any_rank(acc, not np.isfinite(scores).all()):
            skipped = f"non-finite rewards in the {stage} stage ({learner.role})"
        else:
            with timer("experience"):
                exp = make_experience(
                    learner, gen, torch.as_tensor(scores, dtype=torch.float32), group
                )
            finite = bool(
                torch.isfinite(exp.logprobs).all() and torch.isfinite(exp.ref_logprobs).all()
            )
            if any_rank(acc, not finite):
                skipped = f"non-finite log-probs in the {stage} stage ({learner.role})"
            else:
                with timer("update"):
                    stats = update(learner, exp)
                if stats.get("nonfinite"):
                    skipped = f"non-finite loss or gradient in the {stage} stage ({learner.role})"
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if skipped else 0

        # metrics and samples
        row: dict[str, Any] = {
            "step": planned.step,
            "round": planned.round,
            "stage": stage,
            "player": learner.role,
        }
        row.update(
            _mean_over_ranks(
                {
                    "reward": float(np.mean(scores)),
                    "p_safe": _rate(mean_p_safe(p_safe[attack_rows])),
                    "asr": _rate(attack_success_rate(p_safe[attack_rows])),
                    "judge/nonfinite": float(np.sum(~np.isfinite(p_safe))),
                    "attack/fallback": float(np.mean(fallback)),
                    "novelty/selfbleu": float(np.mean(nov["selfbleu"])),
                    "novelty/cosine": float(np.mean(nov["cosine"])),
                    "len/attack": float(att_gen.response_mask.sum(-1).float().mean())
                    if att_gen is not None
                    else 0.0,
                    "len/response": float(def_gen.response_mask.sum(-1).float().mean()),
                    **(
                        {"benign/helpful": float(np.mean(scores[is_benign]))}
                        if stage == "defend" and is_benign.any()
                        else {}
                    ),
                    **(
                        {
                            "seeds/p_safe": _rate(mean_p_safe(p_safe[is_direct])),
                            "seeds/asr": _rate(attack_success_rate(p_safe[is_direct])),
                        }
                        if is_direct.any()
                        else {}
                    ),
                    **eval_figures,
                    **{k: float(v) for k, v in stats.items()},
                },
                world,
            )
        )
        row["history"] = len(self.novelty)
        row["skipped"] = skipped
        row.update({f"time/{k}": round(v, 4) for k, v in timer.totals.items()})
        row["time/step"] = round(time.perf_counter() - t_start, 4)
        self.writer.metrics(row)
        runs.kill_point("after-metrics", planned.step)
        self.writer.samples(
            self._samples(
                planned,
                att_seeds,
                raw_attacks,
                attacks,
                nov,
                def_in,
                def_gen.texts,
                judged,
                scores,
                is_benign,
                is_direct,
                k_def,
            )
        )
        if skipped:
            acc.print(f"step {planned.step}: update skipped: {skipped}")
            if self.nonfinite_in_a_row >= cfg.max_nonfinite_in_a_row:
                raise NonFiniteError(
                    f"{self.nonfinite_in_a_row} updates in a row skipped (last: {skipped}); stopping. "
                    f"The last good checkpoint in {self.run_dir / 'checkpoints'} is intact."
                )
        return row

    def _score(self, prompts: list[str], responses: list[str]) -> JudgeOutput:
        out = self.judge.score(prompts, responses)
        return validate_output(self.judge.name, out, len(prompts), allow_nonfinite=True)

    def _samples(
        self,
        planned,
        att_seeds,
        raw_attacks,
        attacks,
        nov,
        def_in,
        responses,
        judged,
        scores,
        is_benign,
        is_direct,
        k_def,
    ) -> list[dict[str, Any]]:
        rows = []
        for i, prompt in enumerate(def_in):
            a = i // k_def
            row: dict[str, Any] = {
                "step": planned.step,
                "round": planned.round,
                "stage": planned.stage,
                "benign": bool(is_benign[i]),
            }
            if is_direct[i]:  # the defender answered the seed itself
                row.update({"seed": prompt, "prompt": prompt})
            elif not is_benign[i]:
                row.update(
                    {
                        "seed": att_seeds[a],
                        "attack_raw": raw_attacks[a],
                        "attack": attacks[a],
                        "selfbleu": float(nov["selfbleu"][a]),
                        "cosine": float(nov["cosine"][a]),
                    }
                )
            else:
                row["prompt"] = prompt
            row["response"] = responses[i]
            row["p_safe"] = float(judged.p_safe[i])
            if planned.stage == "defend":
                row["reward"] = float(scores[i])
            elif a < len(attacks):
                row["reward"] = float(scores[a])
            for k, v in judged.extras.items():
                row[k] = float(v[i])
            for k, v in judged.labels.items():
                row[k] = v[i]
            rows.append(row)
        rows = _gather(rows, self.acc.num_processes)
        limit = self.cfg.logging.samples_per_step
        return rows if limit is None else rows[:limit]

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        acc = self.acc
        acc.wait_for_everyone()
        try:
            tmp = runs.begin_checkpoint(self.run_dir, self.step) if acc.is_main_process else None
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint step-{self.step} in {self.run_dir}: {exc}"
            ) from None
        tmp = _broadcast(tmp, acc)
        try:
            if acc.is_main_process:
                for player in (self.attacker, self.defender):
                    if player is not None and player.trainable:
                        player.save(tmp / player.role)
                        runs.kill_point(f"after-{player.role}-save", self.step)
                self.novelty.save(tmp / "novelty")
                state = {
                    "step": self.step,
                    "nonfinite_in_a_row": self.nonfinite_in_a_row,
                    "seeds": self.seeds.state_dict(),
                    "benign": self.benign.state_dict() if self.benign is not None else None,
                }
                (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
            acc.wait_for_everyone()
            for player in (self.attacker, self.defender):
                if player is not None and player.trainable:
                    player.save_engine_state(tmp / player.role)
            _save_rng(tmp / "rng" / f"rank-{acc.process_index}.pt")
            acc.wait_for_everyone()
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(
                f"cannot write checkpoint step-{self.step} in {self.run_dir}: {exc}"
            ) from None
        final = None
        if acc.is_main_process:
            final = runs.commit_checkpoint(
                self.run_dir,
                tmp,
                self.step,
                {"mode": self.cfg.game.mode},
                self.cfg.checkpoint.keep_last,
            )
        acc.wait_for_everyone()
        return final

    def _restore(self, checkpoint: Path) -> None:
        try:
            state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
            self.novelty.load(checkpoint / "novelty")
            self.seeds.load_state_dict(state["seeds"])
            if self.benign is not None and state.get("benign"):
                self.benign.load_state_dict(state["benign"])
            self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
            rng_file = checkpoint / "rng" / f"rank-{self.acc.process_index}.pt"
            if rng_file.exists():
                _load_rng(rng_file)
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"cannot restore the game state from {checkpoint}: {exc}"
            ) from None

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        remaining = self.plan[self.step :]
        last_rows: dict[str, dict[str, Any]] = {}
        first_rows: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        if cfg.evaluation.at_start and self.step == 0:
            self._evaluate("step-0", "start")
        with _progress(
            self.show_progress and self.acc.is_main_process, len(self.plan), self.step
        ) as bar:
            for planned in remaining:
                bar.describe(f"round {planned.round}/{cfg.game.rounds} {planned.stage}")
                before = self._pre_step_state()
                try:
                    row = self.play_step(planned)
                except JudgeError as exc:
                    self._stop_after_judge_failure(before, exc)
                self.step = planned.step
                first_rows.setdefault(planned.stage, row)
                last_rows[planned.stage] = row
                bar.advance(row)
                if self.step % cfg.checkpoint.every == 0 and self.step < len(self.plan):
                    self.save_checkpoint()
        latest = runs.latest_checkpoint(self.run_dir)
        if latest is None or latest[0] != self.step:
            self.save_checkpoint()
        summary = self._finish(first_rows, last_rows, time.perf_counter() - t0, len(remaining))
        self.writer.close()
        return summary

    def _evaluate(self, checkpoint: str, name: str) -> dict[str, Any] | None:
        """``sparring eval`` of the run's players at ``checkpoint``, leaving the game's random
        state as it was (so evaluation never changes what training does)."""
        from sparring.evaluation.evaluate import evaluate_run

        e = self.cfg.evaluation
        state = self._pre_step_state()
        try:
            return evaluate_run(
                self.run_dir,
                checkpoint=checkpoint,
                name=name,
                prompts=e.prompts,
                samples=e.samples,
                answers=e.answers,
                seed=e.seed,
                judge=self.judge,
                eval_judge=self.eval_judge,
                progress=self.show_progress,
                accelerator=self.acc,
                # the players in memory are the ones asked for (step-0 before the first step,
                # final after the last): evaluated as they are, no model is loaded again
                players={"attacker": self.attacker, "defender": self.defender},
            )
        finally:
            self._restore_rng(state)

    def _pre_step_state(self) -> dict[str, Any]:
        """What a step changes before its judge is called: prompt pools and RNG states."""
        state = {
            "seeds": copy.deepcopy(self.seeds.state_dict()),
            "benign": copy.deepcopy(self.benign.state_dict()) if self.benign is not None else None,
            "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _restore_rng(self, before: dict[str, Any]) -> None:
        self.seeds.load_state_dict(before["seeds"])
        if self.benign is not None:
            self.benign.load_state_dict(before["benign"])
        random.setstate(before["rng"][0])
        np.random.set_state(before["rng"][1])
        torch.set_rng_state(before["rng"][2])
        if "cuda" in before:
            torch.cuda.set_rng_state_all(before["cuda"])

    def _stop_after_judge_failure(self, before: dict[str, Any], exc: JudgeError) -> None:
        """Undo the failed step's draws, checkpoint the last completed step, and stop."""
        self._restore_rng(before)
        latest = runs.latest_checkpoint(self.run_dir)
        if self.step > 0 and (latest is None or latest[0] != self.step):
            self.save_checkpoint()
        self.writer.close()
        raise JudgeError(
            f"{exc}; stopped before step {self.step + 1}: the run folder {self.run_dir} holds every "
            f"completed step, resume with `sparring train --resume {self.run_dir}`"
        ) from exc

    def _finish(self, first_rows, last_rows, seconds: float, played: int) -> dict[str, Any]:
        acc = self.acc
        summary: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "mode": self.cfg.game.mode,
            "steps": self.step,
            "seconds": round(seconds, 2),
        }
        steps_per_round = len(self.plan) / self.cfg.game.rounds
        summary["seconds_per_round"] = (
            round(seconds * steps_per_round / played, 2) if played else None
        )
        for stage in ("defend", "attack"):
            if stage in last_rows:
                for key in ("p_safe", "asr", "reward", "novelty/selfbleu", "novelty/cosine"):
                    summary[f"{stage}/{key}/first"] = first_rows[stage].get(key)
                    summary[f"{stage}/{key}/last"] = last_rows[stage].get(key)
        if acc.is_main_process:
            final = self.run_dir / "final"
            for player in (self.attacker, self.defender):
                if player is not None:
                    player.export(final / player.role)
        acc.wait_for_everyone()
        if self.cfg.evaluation.at_end:
            final_eval = self._evaluate("final", "final")
            from sparring.evaluation.evaluate import read_evals

            start_eval = read_evals(self.run_dir).get("start")
            summary.update(_eval_summary(start_eval, "before"))
            summary.update(_eval_summary(final_eval, "after"))
        if acc.is_main_process:
            (self.run_dir / "summary.json").write_text(
                json.dumps(summary, indent=2), encoding="utf-8"
            )
        acc.wait_for_everyone()
        return summary


def _eval_summary(result: dict[str, Any] | None, when: str) -> dict[str, Any]:
    """Headline figures of an evaluation: ASR per prompt set (evaluation judge where there is
    one), over-refusal, attacker diversity."""
    if not result:
        return {}
    out: dict[str, Any] = {}
    for name, entry in result["defender"]["sets"].items():
        which = "eval_judge" if entry.get("eval_judge") else "judge"
        out[f"{when}/asr/{name} ({which})"] = entry[which]["asr"]
    refusal = result["defender"].get("over_refusal") or {}
    for which in ("eval_judge", "judge"):
        if refusal.get(which):
            out[f"{when}/over_refusal ({which})"] = refusal[which]["rate"]
            break
    diversity = result["attacker"]["diversity"]
    for key in ("1-selfbleu", "1-cosine"):
        if key in diversity:
            out[f"{when}/attacks/{key}"] = diversity[key]
    return out


def _share(n: int, fraction: float) -> int:
    """How many extra items make ``fraction`` of a batch that already holds ``n`` (at least 1)."""
    return max(1, round(n * fraction / (1 - fraction)))


def _rate(x: float | None) -> float:
    """A metric of the finite scores; NaN in metrics.jsonl when no score was finite."""
    return float("nan") if x is None else x


def quiet_libraries() -> None:
    """Our own progress bar replaces the per-file bars of transformers' loading and saving."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )


def has_run(run_dir: Path) -> bool:
    """True when ``run_dir`` already holds a run (metrics or checkpoints)."""
    return (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists()


def _seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def _save_rng(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python_version": py[0],
        "python_state": torch.tensor(py[1], dtype=torch.int64),
        "python_gauss": py[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": np_state[2],
        "numpy_has_gauss": np_state[3],
        "numpy_gauss": np_state[4],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path)


def _load_rng(path: Path) -> None:
    s = torch.load(path, weights_only=True)
    random.setstate(
        (s["python_version"], tuple(int(x) for x in s["python_state"].tolist()), s["python_gauss"])
    )
    np.random.set_state(
        (
            "MT19937",
            s["numpy_keys"].numpy().astype(np.uint32),
            s["numpy_pos"],
            s["numpy_has_gauss"],
            s["numpy_gauss"],
        )
    )
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _gather(items: list, world: int) -> list:
    return list(gather_object(items)) if world > 1 else list(items)


def _broadcast(obj, acc: Accelerator):
    if acc.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _mean_over_ranks(values: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return values
    gathered = gather_object([values])
    keys = set().union(*gathered)
    out = {}
    for k in keys:
        xs = [g[k] for g in gathered if k in g and g[k] is not None and math.isfinite(g[k])]
        out[k] = float(np.mean(xs)) if xs else float("nan")
    return out


class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def describe(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def advance(self, row: dict[str, Any]) -> None:
        if self.progress is not None:
            info = f"reward {row['reward']:.3f}  P(safe) {row['p_safe']:.3f}  kl {row.get('kl', 0.0):.3f}"
            self.progress.update(self.task, advance=1, info=info)


@contextmanager
def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns) as progress:
        task = progress.add_task("starting", total=total, completed=done, info="")
        yield _Bar(progress, task)
