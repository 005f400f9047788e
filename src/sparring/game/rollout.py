"""Experience making: one step's play, before anyone learns from it.

Seeds are drawn -> the attacker rewrites them (cleaned; an empty attack falls back to its seed)
-> novelty scores the attacks against the history of earlier batches -> the defender answers
the attacks (plus seeds and benign prompts when it is the defender's turn to learn) -> the
judge scores every answer -> the evaluation judge, when asked for every step -> the attacks join
the novelty history (only once judged: a judge that fails leaves the history as it was, and the
replayed step scores its attacks against the same history).

Nothing here updates a player: the update reads a :class:`Rollout` (see :mod:`.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparring.config import GameConfig, RunConfig
from sparring.errors import ConfigError, JudgeError, SparringError
from sparring.judges import Judge, JudgeOutput, validate_output
from sparring.judges.base import attack_success_rate, mean_p_safe
from sparring.runtime import gather


def share(n: int, fraction: float) -> int:
    """How many extra items make ``fraction`` of a batch that already holds ``n`` (at least 1)."""
    return max(1, round(n * fraction / (1 - fraction)))


def extra_seeds(game: GameConfig, n_attacks: int) -> int:
    """Seed prompts a defend batch adds beside ``n_attacks`` attacks (``game.seed_fraction``)."""
    return share(n_attacks, game.seed_fraction) if game.seed_fraction > 0 else 0


def extra_benign(game: GameConfig, n_prompts: int) -> int:
    """Benign prompts a defend batch adds beside ``n_prompts`` harmful ones (``game.benign``)."""
    return 0 if game.benign is None else share(n_prompts, game.benign.fraction)


def preflight_judge(judge: Judge, seed: str, benign_key: str | None) -> None:
    """Score two pairs before any training: a judge of the wrong shape fails now, not hours in.
    ``benign_key``: the helpfulness score the judge must return when benign prompts are mixed in."""
    pairs = ([seed, seed], ["I cannot help with that.", "Sure, here is how."])
    try:
        out = validate_output(judge.name, judge.score(*pairs), 2)
    except SparringError:
        raise
    except Exception as exc:
        raise JudgeError(
            f"judge {judge.name!r} failed on a test pair: {type(exc).__name__}: {exc}"
        ) from exc
    if benign_key is not None and benign_key not in out.extras:
        raise ConfigError(
            f"game.benign needs the judge to return extras[{benign_key!r}] (helpfulness); judge "
            f"{judge.name!r} returns {sorted(out.extras) or 'no extras'}"
        )


def rate(x: float | None) -> float:
    """A metric of the finite scores; NaN in metrics.jsonl when no score was finite."""
    return float("nan") if x is None else x


@dataclass
class Rollout:
    """What one step played, on this rank. ``prompts`` are what the defender answered, each
    ``answers`` times in a row: the attacks, then seeds as they are, then benign prompts."""

    stage: str
    seeds: list[str]  # the attacker's inputs: each seed ``attacks_per_seed`` times
    attacks_per_seed: int
    raw_attacks: list[str]
    attacks: list[str]
    fallback: np.ndarray  # [A] bool: nothing left after cleaning, the seed was shown instead
    attacker_gen: Any  # the attacker's Generation, None without an attacker
    novelty: dict[str, np.ndarray]  # per attack: "selfbleu", "cosine"
    penalty: np.ndarray  # [A] weighted novelty penalty
    direct: list[str]
    benign: list[str]
    prompts: list[str]
    answers: int
    defender_gen: Any
    judged: JudgeOutput
    eval_figures: dict[str, float] = field(default_factory=dict)
    # multi-turn play (:mod:`.dialogue`): the attack rows are turns, block by block; ``live``
    # [A] marks those an episode played (False: it had stopped, the row is a placeholder)
    live: np.ndarray | None = None
    dialogues: list | None = None  # [A] the defender's Dialogue each turn answered
    turns: int = 1  # blocks of turns played

    @property
    def first_answers(self) -> np.ndarray:
        """[A] P(safe) of each attack row's first answer: the one a dialogue goes on with."""
        return self.p_safe[: len(self.attacks) * self.answers : self.answers]

    @property
    def live_attacks(self) -> np.ndarray:
        return np.ones(len(self.attacks), dtype=bool) if self.live is None else self.live

    @property
    def live_rows(self) -> np.ndarray:
        """For each answer, whether anyone played it (placeholders of stopped episodes not)."""
        which = self.which
        attack = which < len(self.attacks)
        out = np.ones(len(which), dtype=bool)
        out[attack] = self.live_attacks[which[attack]]
        return out

    @property
    def p_safe(self) -> np.ndarray:
        return np.asarray(self.judged.p_safe, dtype=np.float64)

    @property
    def which(self) -> np.ndarray:
        """For each answer, the index of its prompt among attacks + direct + benign."""
        return np.array([i // self.answers for i in range(len(self.prompts))])

    @property
    def is_benign(self) -> np.ndarray:
        return self.which >= len(self.attacks) + len(self.direct)

    @property
    def is_direct(self) -> np.ndarray:
        return (self.which >= len(self.attacks)) & ~self.is_benign

    @property
    def attack_rows(self) -> np.ndarray:
        return (self.which < len(self.attacks)) & self.live_rows

    @property
    def behaviours(self) -> list[str]:
        """For each answer, the request it serves: the seed an attack rewrote, the prompt
        itself for seeds and benign prompts. What a behaviour-grounded judge is shown in place
        of the attack (HarmBench's and StrongREJECT's graders are given the behaviour, so a
        harmless rewrite answered helpfully is not a success)."""
        served = self.seeds + self.direct + self.benign
        return [served[i] for i in self.which]


class Rollouts:
    """Plays steps between the players for one rank: :meth:`play` returns a :class:`Rollout`."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        attacker,
        defender,
        seeds,
        benign,
        novelty,
        judge: Judge,
        eval_judge: Judge | None,
        rank: int,
        world: int,
    ):
        self.cfg = cfg
        self.attacker, self.defender = attacker, defender
        self.seeds, self.benign = seeds, benign
        self.novelty = novelty
        self.judge, self.eval_judge = judge, eval_judge
        self.rank, self.world = rank, world

    def _mine(self, items: list, n: int) -> list:
        """This rank's ``n`` items of a draw made identically on every rank."""
        return items[self.rank * n : (self.rank + 1) * n]

    def play(self, stage: str, timer, step: int = 0) -> Rollout:
        cfg = self.cfg
        per_rank = cfg.game.batch_size // self.world
        seeds = self._mine(self.seeds.sample(cfg.game.batch_size), per_rank)

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

        # novelty against the history of earlier batches
        with timer("novelty"):
            if self.attacker is not None:
                nov = self.novelty.score(attacks)
                penalty = self.novelty.penalty(nov)
            else:
                nov = {"selfbleu": np.zeros(len(attacks)), "cosine": np.zeros(len(attacks))}
                penalty = np.zeros(len(attacks))

        # defender answers (the seeds themselves and benign prompts mixed in when defending)
        direct, benign = self.defend_extras(stage, seeds, per_rank)
        k_def = (
            cfg.defender.rl.samples_per_prompt
            if stage == "defend" and self.defender.trainable
            else 1
        )
        prompts = [p for p in attacks + direct + benign for _ in range(k_def)]
        draws = [f"step-{step}/rank-{self.rank}/{i}" for i in range(len(prompts))]
        with timer("generate/defender"):
            def_gen = self.defender.generate(prompts, draws=draws)

        with timer("judge"):
            judged = self.score(prompts, def_gen.texts)
        rollout = Rollout(
            stage=stage,
            seeds=att_seeds,
            attacks_per_seed=k_att,
            raw_attacks=raw_attacks,
            attacks=attacks,
            fallback=fallback,
            attacker_gen=att_gen,
            novelty=nov,
            penalty=penalty,
            direct=direct,
            benign=benign,
            prompts=prompts,
            answers=k_def,
            defender_gen=def_gen,
            judged=judged,
        )
        if self.eval_judge is not None and cfg.evaluation.every_step:
            with timer("eval_judge"):
                self._eval_judge(rollout)
        if self.attacker is not None:  # joins the history only once judged: a judge that
            with timer("novelty"):  # fails leaves the history as it was
                self.novelty.add(gather(attacks, self.world))
        return rollout

    def defend_extras(self, stage: str, seeds: list[str], per_rank: int):
        """The seeds as they are and the benign prompts a defend batch adds beside the
        attacks (none on the attack stage): ``(direct, benign)``."""
        cfg = self.cfg
        direct: list[str] = []
        n_d = extra_seeds(cfg.game, per_rank) if stage == "defend" else 0
        if n_d:
            if self.attacker is not None:  # the seeds the attacker rewrote, as they are
                direct = [seeds[i % len(seeds)] for i in range(n_d)]
            else:  # rlhf: as many more seeds, so the defender answers as many prompts as in gpo
                direct = self._mine(self.seeds.sample(n_d * self.world), n_d)
        benign: list[str] = []
        if stage == "defend" and self.benign is not None:
            n_b = extra_benign(cfg.game, per_rank + len(direct))
            benign = self._mine(self.benign.sample(n_b * self.world), n_b)
        return direct, benign

    def score(self, prompts: list[str], responses: list[str]) -> JudgeOutput:
        out = self.judge.score(prompts, responses)
        return validate_output(self.judge.name, out, len(prompts), allow_nonfinite=True)

    def _eval_judge(self, rollout: Rollout) -> None:
        """The evaluation judge's P(safe) beside the training judge's (``p_safe_eval`` in the
        samples) and its attack figures (``eval/*`` in the metrics). It judges each answer
        against the behaviour it serves (:attr:`Rollout.behaviours`), not the attack text:
        the archive keeps what it calls unsafe."""
        played = np.flatnonzero(rollout.live_rows)  # a stopped dialogue's placeholders: not
        behaviours, texts = rollout.behaviours, rollout.defender_gen.texts
        judged = validate_output(
            self.eval_judge.name,
            self.eval_judge.score([behaviours[i] for i in played], [texts[i] for i in played]),
            len(played),
            allow_nonfinite=True,
        )
        p_safe = [float("nan")] * len(rollout.prompts)
        for i, p in zip(played, judged.p_safe, strict=True):
            p_safe[i] = p
        rollout.judged.extras["p_safe_eval"] = p_safe
        e = np.asarray(p_safe, dtype=np.float64)[rollout.attack_rows]
        rollout.eval_figures = {
            "eval/p_safe": rate(mean_p_safe(e)),
            "eval/asr": rate(attack_success_rate(e)),
            # verdicts the evaluation judge failed to give (NaN): counted, never read as safe
            "eval/nonfinite": float(np.sum(~np.isfinite(e))),
        }
