"""Opponent pools: past snapshots of both players, the rule that draws each step's opponent,
and the empirical game between the snapshots.

GPO's convergence result is for the players' *averaged* play; trained against the other's
latest weights only, two players can cycle (the defender closes today's hole and reopens
yesterday's). With ``game.pool`` each player keeps snapshots (:mod:`sparring.players.snapshots`)
of its weights: the initial ones, then one after every ``every`` of its steps, at most ``size``
of them. Each step the learner's opponent is

- ``latest``: the opponent's current weights (GPO as published; the pool is only measured);
- ``uniform``: a uniform draw over the opponent's snapshots and its current weights (fictitious
  play: a best response to the opponent's average play);
- ``nash``: a draw from the Nash mixture of the empirical game (PSRO, Lanctot et al. 2017).

The empirical game: when a snapshot joins, it plays every snapshot of the other pool on
``payoff_prompts`` fixed seed prompts (the attacker rewrites them, the defender answers each
``payoff_answers`` times, the training judge scores); the payoff is the mean P(unsafe). Its figures, logged every step:
``pool/value`` (the game's Nash value), ``pool/gap`` (the Nash gap of the newest pair: what the
best snapshot on each side would gain against them; 0 at an equilibrium of the pool) and
``pool/defender_exploit`` (the best snapshot attacker's payoff against the newest defender).

Past ``size`` (``null``: no bound, the whole population is kept) one snapshot leaves, by
``eviction``: the oldest (a sliding window), the one the Nash mixture weighs least, or a
reservoir (Vitter's algorithm R: every snapshot ever taken has the same chance to be kept, so
``uniform`` is fictitious play over all past play in a bounded memory). The snapshot just taken
is never the one evicted, except that a reservoir may decline to take it. Each payoff's
standard error over the payoff prompts' attacks is kept beside it (``pool/payoff_se``, the
largest, and ``pool/payoff_se/median``: against ``pool/gap``, whether the game's figures can
be told from noise). With ``eval_judge: true`` the run's evaluation judge (in the arena, the
gold oracle) scores the same answers, each against the seed its attack rewrote (as evaluation
judges): ``pool/eval_judge/defender_exploit`` and
``pool/eval_judge/value`` (what the training judge's Nash mixtures score under it) are logged
beside the training judge's, as a diagnostic of the proxy the game is solved with; they never
decide a draw, an eviction or a deployment.

Every draw and every payoff is reproducible: draws come from a generator seeded by the run's
seed and the step, payoffs are played with the global RNG forked and seeded by the pair, so the
pool never moves the game's own random streams and a resumed run draws what the uninterrupted
one would have.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparring.config import PoolConfig
from sparring.errors import CheckpointError, JudgeError
from sparring.game.nash import nash_gap, one_hot, solve_zero_sum
from sparring.judges import Judge, validate_output
from sparring.players import snapshots
from sparring.runtime import broadcast, forked_rng

ROLES = ("attacker", "defender")
#: whose snapshot is the opponent when a stage's learner trains
OPPONENT = {"defend": "attacker", "attack": "defender"}
_LEARNER = {"defend": "defender", "attack": "attacker"}


@dataclass
class Member:
    """One snapshot: ``id`` is the player's step count when it was taken (0: the initial one)."""

    id: int
    state: snapshots.State


class Pools:
    """Both players' snapshots, the opponent draws and the empirical game between them."""

    def __init__(
        self,
        cfg: PoolConfig,
        *,
        players: dict[str, Any],
        judge: Judge,
        eval_judge: Judge | None = None,
        seed_prompts: list[str],
        seed: int,
        acc,
    ):
        self.cfg = cfg
        self.players = players
        self.judge = judge
        # the diagnostic judge (game.pool.eval_judge): scores the same answers, decides nothing
        self.eval_judge = eval_judge if cfg.eval_judge else None
        rng = random.Random(seed)
        self.payoff_seeds = [rng.choice(seed_prompts) for _ in range(cfg.payoff_prompts)]
        self.seed = seed
        self.acc = acc
        self.members: dict[str, list[Member]] = {r: [] for r in ROLES}
        self.steps = dict.fromkeys(ROLES, 0)
        self.payoff: dict[tuple[int, int], float] = {}
        # the standard error of each payoff, over the payoff prompts' attacks
        self.payoff_se: dict[tuple[int, int], float] = {}
        # the same payoffs by the evaluation judge (game.pool.eval_judge)
        self.payoff_eval: dict[tuple[int, int], float] = {}
        self._solved: tuple[tuple, tuple[np.ndarray, np.ndarray, float] | None] | None = None

    @classmethod
    def for_run(cls, cfg: PoolConfig | None, *, checkpoint: Path | None, **kw) -> Pools | None:
        """The run's pools (None without ``game.pool``): restored from ``checkpoint``, else
        holding both players' initial snapshots."""
        if cfg is None:
            return None
        pools = cls(cfg, **kw)
        if checkpoint is not None:
            pools.load(checkpoint / "pool")
        else:
            pools.start()
        return pools

    @property
    def measured(self) -> bool:
        return self.cfg.measure or self.cfg.opponent == "nash"

    # -- snapshots ---------------------------------------------------------------------------
    def start(self) -> None:
        """The initial snapshot of both players (and their payoff)."""
        for role in ROLES:
            self._add(role)

    def after_step(self, stage: str) -> None:
        """Count a step of the stage's learner; take its snapshot every ``every`` steps."""
        role = _LEARNER[stage]
        self.steps[role] += 1
        if self.steps[role] % self.cfg.every == 0:
            self._add(role)

    def eviction(self) -> str:
        """The eviction rule in force (``auto`` resolved)."""
        rule = self.cfg.eviction
        if rule == "auto":
            return "nash-weight" if self.cfg.opponent == "nash" else "oldest"
        return rule

    def _kept_by_reservoir(self, role: str) -> int | None:
        """Reservoir sampling (Vitter's algorithm R) of the snapshots a full pool keeps: the
        n-th snapshot ever offered enters with probability size / n, in the place of a uniform
        draw among the kept ones (returns that index), else is not kept (None). Every snapshot
        ever taken then has the same chance to be in the pool. The draw is seeded by the run's
        seed, the role and n: a resumed run keeps what the uninterrupted one would."""
        offered = self.steps[role] // self.cfg.every + 1  # the initial snapshot is the first
        rng = np.random.default_rng([self.seed, ROLES.index(role), offered])
        j = int(rng.integers(offered))
        return j if j < len(self.members[role]) else None

    def _add(self, role: str) -> None:
        size = self.cfg.size
        full = size is not None and len(self.members[role]) >= size
        if full and self.eviction() == "reservoir":
            replaced = self._kept_by_reservoir(role)
            if replaced is None:
                return  # not drawn into the reservoir: the pool stays as it is
            self._remove(role, self.members[role][replaced])
        member = Member(self.steps[role], snapshots.take(self.players[role]))
        if self.measured:
            other = "defender" if role == "attacker" else "attacker"
            for m in self.members[other]:
                a, d = (member, m) if role == "attacker" else (m, member)
                self.payoff[(a.id, d.id)] = self._play(a, d)
        self.members[role].append(member)
        if size is not None and len(self.members[role]) > size:
            self._evict(role)

    def _evict(self, role: str) -> None:
        pool = self.members[role]
        candidates = pool[:-1]  # never the snapshot just taken
        victim = candidates[0]
        if self.eviction() == "nash-weight":
            x, y = self.mixtures()
            weights = x if role == "attacker" else y
            lowest = min(weights[: len(candidates)])
            victim = next(m for m, w in zip(candidates, weights, strict=False) if w <= lowest)
        self._remove(role, victim)

    def _remove(self, role: str, victim: Member) -> None:
        """``victim`` leaves the pool, with its payoffs."""
        self.members[role].remove(victim)
        key = 0 if role == "attacker" else 1
        self.payoff = {k: v for k, v in self.payoff.items() if k[key] != victim.id}
        self.payoff_se = {k: v for k, v in self.payoff_se.items() if k[key] != victim.id}
        self.payoff_eval = {k: v for k, v in self.payoff_eval.items() if k[key] != victim.id}

    def _play(self, a: Member, d: Member) -> float:
        """The payoff of attacker snapshot ``a`` against defender snapshot ``d``: the mean
        P(unsafe) by the training judge of ``d``'s answers to ``a``'s rewrites of the payoff
        seeds, sampled under the global RNG forked and seeded by the pair (rank 0's figure on
        every rank)."""
        attacker, defender = self.players["attacker"], self.players["defender"]
        k = self.cfg.payoff_answers
        with forked_rng(self.seed * 1_000_003 + a.id * 1_009 + d.id):
            with snapshots.playing_as(attacker, a.state):
                gen = attacker.generate(self.payoff_seeds)
            attacks = attacker.clean_texts(gen.texts, self.payoff_seeds).texts
            asked = [t for t in attacks for _ in range(k)]
            with snapshots.playing_as(defender, d.state):
                answers = defender.generate(asked).texts
        out = validate_output(
            self.judge.name, self.judge.score(asked, answers), len(asked), allow_nonfinite=True
        )
        value, se = payoff_estimate(out.p_safe, k)
        if value is None:
            raise JudgeError(f"judge {self.judge.name!r} gave no finite verdict on a pool pair")
        self.payoff_se[(a.id, d.id)] = float(broadcast(se, self.acc))
        if self.eval_judge is not None:
            # behaviour-grounded as in evaluation: each answer against the seed its attack
            # rewrote; on its own fork, so judging never moves training
            served = [s for s in self.payoff_seeds for _ in range(k)]
            with forked_rng(self.seed * 1_000_003 + a.id * 1_009 + d.id + 1):
                diag = validate_output(
                    self.eval_judge.name,
                    self.eval_judge.score(served, answers),
                    len(asked),
                    allow_nonfinite=True,
                )
            v = payoff_estimate(diag.p_safe, k)[0]
            self.payoff_eval[(a.id, d.id)] = float(
                broadcast(math.nan if v is None else v, self.acc)
            )
        return float(broadcast(value, self.acc))

    # -- the empirical game ------------------------------------------------------------------
    def matrix(self, payoff: dict[tuple[int, int], float] | None = None) -> np.ndarray | None:
        """Payoffs (``payoff``, else the training judge's), attacker snapshots (rows) by
        defender snapshots (columns), oldest first; None until every pair has been played."""
        payoff = self.payoff if payoff is None else payoff
        rows, cols = self.members["attacker"], self.members["defender"]
        if not rows or not cols:
            return None
        try:
            return np.array([[payoff[(a.id, d.id)] for d in cols] for a in rows])
        except KeyError:
            return None

    def equilibrium(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """``(x, y, value)`` of :func:`~sparring.game.nash.solve_zero_sum` on :meth:`matrix`
        (None while it is not filled). A pair's payoff never changes once played, so the
        solution is kept until the snapshots in the pools change."""
        key = tuple(tuple(m.id for m in self.members[r]) for r in ROLES)
        if self._solved is None or self._solved[0] != key:
            m = self.matrix()
            self._solved = (key, None if m is None else solve_zero_sum(m))
        return self._solved[1]

    def mixtures(self) -> tuple[np.ndarray, np.ndarray]:
        """The Nash mixtures of the attacker and defender snapshots."""
        solved = self.equilibrium()
        if solved is None:
            raise RuntimeError("the pool's empirical game is not filled (game.pool.measure)")
        return solved[0], solved[1]

    def figures(self, opponent: tuple[str, Member | None] | None = None) -> dict[str, float]:
        """The pool's line in ``metrics.jsonl``: its sizes, the age of the step's ``opponent``
        (:meth:`playing`), and the empirical game's figures once it is filled."""
        out = {f"pool/{r}": float(len(self.members[r])) for r in ROLES}
        if opponent is not None:
            out["pool/opponent_age"] = self.opponent_age(*opponent)
        m, solved = self.matrix(), self.equilibrium()
        if m is None or solved is None:
            return out
        value = solved[2]
        na, nd = m.shape
        newest = (one_hot(na, na - 1), one_hot(nd, nd - 1))
        out["pool/value"] = value
        out["pool/gap"] = nash_gap(m, *newest)
        out["pool/defender_exploit"] = float(np.max(m[:, -1]))
        se = [v for v in self.payoff_se.values() if math.isfinite(v)]
        if se:  # how far apart two payoffs must be to be told apart: against the gap above
            out["pool/payoff_se"] = float(max(se))
            out["pool/payoff_se/median"] = float(np.median(se))
        ev = self.matrix(self.payoff_eval) if self.eval_judge is not None else None
        if ev is not None:  # the proxy's game read by the evaluation judge: a diagnostic
            out["pool/eval_judge/defender_exploit"] = float(np.max(ev[:, -1]))
            out["pool/eval_judge/value"] = float(solved[0] @ ev @ solved[1])
        return out

    # -- opponents ---------------------------------------------------------------------------
    def opponent(self, stage: str, step: int) -> tuple[str, Member | None]:
        """The role whose snapshot plays against the stage's learner, and the snapshot (None:
        its current weights)."""
        role = OPPONENT[stage]
        pool = self.members[role]
        rule = self.cfg.opponent
        if rule == "latest" or not pool:
            return role, None
        rng = np.random.default_rng([self.seed, step])
        if rule == "uniform":
            i = int(rng.integers(len(pool) + 1))
            return role, pool[i] if i < len(pool) else None
        x, y = self.mixtures()
        p = x if role == "attacker" else y
        return role, pool[int(rng.choice(len(pool), p=p))]

    @contextlib.contextmanager
    def playing(self, planned) -> Iterator[tuple[str, Member | None]]:
        """The step's opponent (:meth:`opponent`) plays inside the block with its snapshot's
        weights; its own are back after it."""
        role, member = self.opponent(planned.stage, planned.step)
        with snapshots.playing_as(self.players[role], member.state if member else None):
            yield role, member

    def export(self, player, directory: Path) -> None:
        """Write ``player`` for deployment: with ``deploy: average`` the defender is the average
        of its snapshots and its final weights; with ``deploy: nash`` the Nash mixture of its
        snapshots (:mod:`sparring.players.mixture`: one model folder per snapshot the mixture
        weighs, and ``mixture.json``); otherwise (and always for the attacker) its final
        weights."""
        pool = self.members[player.role]
        if player.role == "defender" and self.cfg.deploy == "average" and pool:
            states = [m.state for m in pool] + [snapshots.take(player)]
            snapshots.export_average(player, states, directory)
        elif player.role == "defender" and self.cfg.deploy == "nash" and pool:
            from sparring.players.mixture import write_mixture

            _, y = self.mixtures()
            kept = [(m, float(w)) for m, w in zip(pool, y, strict=True) if w > 1e-9]
            for m, _ in kept:
                with snapshots.playing_as(player, m.state):
                    player.export(directory / f"snapshot-{m.id}")
            write_mixture(
                directory,
                [(f"snapshot-{m.id}", w) for m, w in kept],
                "the defender's Nash mixture over its pool's snapshots (game.pool.deploy: nash)",
            )
        else:
            player.export(directory)

    def opponent_age(self, role: str, member: Member | None) -> float:
        """Steps of the opponent since its snapshot was taken (0: its current weights)."""
        return 0.0 if member is None else float(self.steps[role] - member.id)

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        for role in ROLES:
            for m in self.members[role]:
                snapshots.save(m.state, folder / role / f"{m.id}.safetensors")
        state = {
            "steps": self.steps,
            "members": {r: [m.id for m in self.members[r]] for r in ROLES},
            "payoff": [[a, d, v] for (a, d), v in sorted(self.payoff.items())],
            "payoff_se": [[a, d, v] for (a, d), v in sorted(self.payoff_se.items())],
            "payoff_eval": [[a, d, v] for (a, d), v in sorted(self.payoff_eval.items())],
        }
        (folder / "pool.json").write_text(json.dumps(state), encoding="utf-8")

    def load(self, folder: Path) -> None:
        try:
            state = json.loads((folder / "pool.json").read_text(encoding="utf-8"))
            self.steps = {r: int(state["steps"][r]) for r in ROLES}
            self.members = {
                r: [
                    Member(i, snapshots.load(folder / r / f"{i}.safetensors"))
                    for i in state["members"][r]
                ]
                for r in ROLES
            }
            self.payoff = {(int(a), int(d)): float(v) for a, d, v in state["payoff"]}
            self.payoff_se = {(int(a), int(d)): float(v) for a, d, v in state.get("payoff_se", [])}
            self.payoff_eval = {
                (int(a), int(d)): float(v) for a, d, v in state.get("payoff_eval", [])
            }
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"cannot restore the opponent pool from {folder}: {exc}"
            ) from None
        if any(not math.isfinite(v) for v in self.payoff.values()):
            raise CheckpointError(f"{folder / 'pool.json'}: non-finite payoffs")


def payoff_estimate(p_safe, answers: int) -> tuple[float | None, float]:
    """``(mean P(unsafe), its standard error)`` of one pool pair from the judge's P(safe) of
    every answer, ``answers`` consecutive answers per attack. The attack is the unit: its
    answers are averaged first (they share the attack), and the standard error is the SD of
    the attacks' means over the square root of their number (NaN with fewer than two). Verdicts
    the judge could not give (NaN) are left out; (None, NaN) when none is left."""
    x = np.asarray(p_safe, dtype=np.float64).reshape(-1, answers)
    per_attack = [1.0 - row[np.isfinite(row)].mean() for row in x if np.isfinite(row).any()]
    if not per_attack:
        return None, float("nan")
    n = len(per_attack)
    se = float(np.std(per_attack, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return float(np.mean(per_attack)), se
