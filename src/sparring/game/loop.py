"""The GPO game: rounds of defend and attack stages between two RL players.

``Game(cfg).run()`` is the whole job. :class:`Game` sets a run up (data, judges, players,
novelty, the run folder) and plays its plan; each step is a rollout (:mod:`.rollout`: the
attacker writes, novelty is scored, the defender answers, the judge scores, the attacks join the
novelty history), the stage learner's rewards (:mod:`.rewards`), one RL update
(:mod:`sparring.rl.trainer`) and a line of metrics and samples (:mod:`.logbook`). Checkpoints and
the game's random state live in :mod:`.checkpoint`.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from sparring import runs
from sparring.config import RunConfig, dump_config
from sparring.data import PromptPool, load_prompts
from sparring.errors import ConfigError, EndpointError, JudgeError, NonFiniteError, SparringError
from sparring.evaluation import archive
from sparring.evaluation.archive import successes
from sparring.evaluation.evaluate import evaluate_run, read_evals
from sparring.game.checkpoint import (
    capture_draws,
    restore_checkpoint,
    restore_draws,
    save_checkpoint,
    use_run_cache,
)
from sparring.game.dialogue import DialogueRollouts
from sparring.game.logbook import (
    Timer,
    endpoint_figures,
    eval_summary,
    run_progress,
    sample_rows,
    stage_summary,
    step_metrics,
)
from sparring.game.plan import MODE_STAGES, PlannedStep, build_plan
from sparring.game.pool import Pools
from sparring.game.probe import RoundProbe
from sparring.game.rewards import stage_scores
from sparring.game.rollout import Rollouts, extra_benign, extra_seeds, preflight_judge
from sparring.game.stopping import StopRequest, checkpoint_here
from sparring.judges import Judge, build_judge
from sparring.judges.base import blocked_is_safe
from sparring.novelty import build_novelty
from sparring.players.endpoint import EndpointPlayer
from sparring.players.engine import build_engines
from sparring.players.mixture import MixturePlayer, is_mixture
from sparring.players.player import Player
from sparring.rl.trainer import checked_update, updates_per_stage_step
from sparring.runtime import quiet_libraries, seed_everything


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
        self.stages = MODE_STAGES[cfg.game.mode]
        roles = [
            r for r, st in (("defender", "defend"), ("attacker", "attack")) if st in self.stages
        ]
        given = {role: accelerator for role in roles} if accelerator is not None else None
        self.engines = given or build_engines(cfg.accelerate, roles)
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
        elif acc.is_main_process and runs.has_run(self.run_dir):
            raise ConfigError(
                f"run folder {self.run_dir} already holds a run; resume it with --resume {self.run_dir} "
                "or choose another output_dir"
            )
        seed_everything(cfg.seed, acc.process_index)
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
        self.judge = blocked_is_safe(self._judge_override or build_judge(cfg.judge))
        self.eval_judge = blocked_is_safe(cfg.eval_judge and build_judge(cfg.eval_judge))
        use_run_cache(self.run_dir, acc, judge=self.judge, eval_judge=self.eval_judge)
        benign_key = g.benign.score_key if self.benign is not None else None
        preflight_judge(self.judge, self.seeds.prompts[0], benign_key)
        self.novelty = build_novelty(cfg.novelty)
        attacker_trains = "attack" in self.stages
        defender_trains = "defend" in self.stages
        n_attack = sum(1 for s in self.plan if s.stage == "attack")
        n_defend = len(self.plan) - n_attack
        per_rank = g.batch_size // world
        accumulation = cfg.accelerate.gradient_accumulation_steps
        att_rows = per_rank * cfg.attacker.rl.samples_per_prompt * g.turns  # at most
        n_direct = extra_seeds(g, per_rank)
        def_rows = (
            per_rank * g.turns + n_direct + extra_benign(g, per_rank + n_direct)
        ) * cfg.defender.rl.samples_per_prompt

        def trained(role: str, player_cfg, trains: bool, steps: int, rows: int) -> Player:
            return Player.build(
                role,
                player_cfg,
                self.engines.get(role, self.acc),
                trainable=trains,
                total_updates=steps * updates_per_stage_step(player_cfg, rows, accumulation),
                checkpoint=checkpoint / role if checkpoint and trains else None,
            )

        self.attacker = None
        if g.mode != "rlhf":
            self.attacker = trained("attacker", cfg.attacker, attacker_trains, n_attack, att_rows)
        if cfg.defender.type == "openai":  # served elsewhere, frozen (game.mode attacker)
            self.defender = EndpointPlayer.from_config("defender", cfg.defender)
        elif not defender_trains and is_mixture(cfg.defender.model):  # a deployed mixture
            self.defender = MixturePlayer.load("defender", cfg.defender.model, cfg.defender, acc)
        else:
            self.defender = trained("defender", cfg.defender, defender_trains, n_defend, def_rows)
        use_run_cache(self.run_dir, acc, defender=self.defender)
        self.pools = Pools.for_run(
            g.pool,
            players={"attacker": self.attacker, "defender": self.defender},
            judge=self.judge,
            eval_judge=self.eval_judge,
            seed_prompts=self.seeds.prompts,
            seed=cfg.seed,
            acc=acc,
            checkpoint=checkpoint,
        )
        self.probe = RoundProbe.for_run(
            cfg.evaluation.probe, self.eval_judge or self.judge, cfg, self.step
        )
        if checkpoint is not None:
            state = restore_checkpoint(
                checkpoint,
                acc.process_index,
                novelty=self.novelty,
                seeds=self.seeds,
                benign=self.benign,
            )
            self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.resume:
                runs.clean_partial_checkpoints(self.run_dir)
                for name in ("metrics.jsonl", "samples.jsonl"):
                    runs.truncate_jsonl(self.run_dir / name, self.step)
                archive.truncate(self.run_dir / archive.FILE, self.step)
            (self.run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
            judges = {r: getattr(getattr(self, r), "files", None) for r in ("judge", "eval_judge")}
            (self.run_dir / "judges.json").write_text(json.dumps(judges, indent=1), "utf-8")
        self.writer = runs.RunWriter(
            self.run_dir,
            tensorboard=cfg.logging.tensorboard,
            report_to=cfg.logging.report_to,
            tracker_kwargs=cfg.logging.tracker_kwargs,
            project=cfg.logging.project or cfg.name,
            config=cfg.model_dump(mode="json"),
            enabled=acc.is_main_process,
            purge_step=self.step + 1 if self.resume else None,
        )
        self.archive = None
        if cfg.logging.archive and self.attacker is not None and acc.is_main_process:
            novelty = self.novelty
            self.archive = archive.Archive(
                self.run_dir / archive.FILE,
                embedder=lambda: novelty.embedder,
                dedup_cosine=cfg.logging.archive_dedup_cosine,
            )
        self.rollouts = (DialogueRollouts if g.turns > 1 else Rollouts)(
            cfg,
            attacker=self.attacker,
            defender=self.defender,
            seeds=self.seeds,
            benign=self.benign,
            novelty=self.novelty,
            judge=self.judge,
            eval_judge=self.eval_judge,
            rank=acc.process_index,
            world=world,
        )

    # -- one step --------------------------------------------------------------------------------
    def play_step(self, planned: PlannedStep) -> dict[str, Any]:
        """Play one step (:mod:`.rollout`), reward the stage's learner (:mod:`.rewards`), update
        it (:mod:`sparring.rl.trainer`), and record the step (:mod:`.logbook`)."""
        cfg, acc = self.cfg, self.acc
        timer = Timer()
        t_start = time.perf_counter()
        with self.pools.playing(planned) if self.pools else nullcontext() as opponent:
            rollout = self.rollouts.play(planned.stage, timer, planned.step)
        learner = self.defender if planned.stage == "defend" else self.attacker
        scores = stage_scores(rollout, cfg)
        if planned.stage == "defend":
            gen, group, live = rollout.defender_gen, rollout.answers, rollout.live_rows
        else:
            gen, group, live = rollout.attacker_gen, rollout.attacks_per_seed, rollout.live_attacks
        what = f"the {planned.stage} stage ({learner.role})"
        stats, skipped = checked_update(learner, gen, scores, group, timer, what=what, live=live)
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if skipped else 0
        if self.pools is not None:
            with timer("pool"):
                self.pools.after_step(planned.stage)

        world = acc.num_processes
        row = step_metrics(planned, learner.role, rollout, scores, stats, world)
        row.update(
            endpoint_figures(defender=self.defender, judge=self.judge, eval_judge=self.eval_judge)
        )
        row["history"] = len(self.novelty)
        if self.pools is not None:
            row.update(self.pools.figures(opponent))
        if self.probe is not None and self.probe.due(planned, self.plan):
            with timer("probe"):
                row.update(self.probe.measure(self.defender, planned.round))
        row["skipped"] = skipped
        row.update({f"time/{k}": round(v, 4) for k, v in timer.totals.items()})
        row["time/step"] = round(time.perf_counter() - t_start, 4)
        self.writer.metrics(row)
        runs.kill_point("after-metrics", planned.step)
        samples = sample_rows(planned, rollout, scores, world, None)
        limit = cfg.logging.samples_per_step
        self.writer.samples(samples if limit is None else samples[:limit])
        if self.archive is not None and acc.is_main_process:
            self.archive.add(
                successes(
                    samples,
                    run=cfg.name,
                    judge=self.judge.name,
                    eval_judge=self.eval_judge.name if self.eval_judge is not None else None,
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

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        state = {
            "step": self.step,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "seeds": self.seeds.state_dict(),
            "benign": self.benign.state_dict() if self.benign is not None else None,
        }
        return save_checkpoint(
            self.acc,
            self.run_dir,
            self.step,
            players=(self.attacker, self.defender),
            novelty=self.novelty,
            state=state,
            meta={"mode": self.cfg.game.mode},
            keep_last=self.cfg.checkpoint.keep_last,
            pools=self.pools,
        )

    def save_checkpoint_unless_saved(self) -> None:
        """Checkpoint the current step unless the newest checkpoint already holds it."""
        latest = runs.latest_checkpoint(self.run_dir)
        if latest is None or latest[0] != self.step:
            self.save_checkpoint()

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        remaining = self.plan[self.step :]
        last_rows: dict[str, dict[str, Any]] = {}
        first_rows: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        if cfg.evaluation.at_start and self.step == 0:
            self._evaluate("step-0", "start")
        shown = self.show_progress and self.acc.is_main_process
        with run_progress(shown, len(self.plan), self.step) as bar, StopRequest() as stop:
            for planned in remaining:
                bar.describe(f"round {planned.round}/{cfg.game.rounds} {planned.stage}")
                before = capture_draws(self.seeds, self.benign)
                try:
                    row = self.play_step(planned)
                except (JudgeError, EndpointError) as exc:
                    self._stop_after_failure(before, exc)
                self.step = planned.step
                first_rows.setdefault(planned.stage, row)
                last_rows[planned.stage] = row
                bar.advance(row)
                if self.step % cfg.checkpoint.every == 0 and self.step < len(self.plan):
                    self.save_checkpoint()
                if stop.agreed(self.acc):  # Ctrl-C or SIGTERM: this step is kept (.stopping)
                    raise KeyboardInterrupt(checkpoint_here(self))
        self.save_checkpoint_unless_saved()
        summary = self._finish(first_rows, last_rows, time.perf_counter() - t0, len(remaining))
        self.writer.close()
        return summary

    def _evaluate(self, checkpoint: str, name: str) -> dict[str, Any] | None:
        """``sparring eval`` of the run's players at ``checkpoint``, leaving the game's random
        state as it was (so evaluation never changes what training does)."""
        e = self.cfg.evaluation
        state = capture_draws(self.seeds, self.benign)
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
            restore_draws(state, self.seeds, self.benign)

    def _stop_after_failure(self, before: dict[str, Any], exc: SparringError) -> None:
        """A judge or an endpoint failed: undo the failed step's draws, checkpoint the last
        completed step, and stop (``--resume`` continues; cached answers are not paid again)."""
        restore_draws(before, self.seeds, self.benign)
        raise type(exc)(f"{exc}; {checkpoint_here(self)}") from exc

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
        summary.update(stage_summary(first_rows, last_rows))
        if acc.is_main_process:
            final = self.run_dir / "final"
            for player in (self.attacker, self.defender):
                if player is not None and self.pools is not None:
                    self.pools.export(player, final / player.role)  # game.pool.deploy
                elif player is not None:
                    player.export(final / player.role)
        acc.wait_for_everyone()
        if self.cfg.evaluation.at_end:
            final_eval = self._evaluate("final", "final")
            start_eval = read_evals(self.run_dir).get("start")
            summary.update(eval_summary(start_eval, "before"))
            summary.update(eval_summary(final_eval, "after"))
        if acc.is_main_process:
            (self.run_dir / "summary.json").write_text(
                json.dumps(summary, indent=2), encoding="utf-8"
            )
        acc.wait_for_everyone()
        return summary
