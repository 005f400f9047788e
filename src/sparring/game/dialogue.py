"""Episodes over several turns (``game.turns`` > 1): one step's play as conversations.

Each episode starts from a seed behaviour. At turn t the attacker, shown its seed and the
dialogue so far (:class:`~sparring.players.templates.Dialogue`, in which it is the assistant and
the defender's answers come back as the user's), writes the next user turn; the defender
answers the whole dialogue in its own template; the judge scores that answer against the seed
behaviour (never the turn: a harmless-looking turn answered helpfully is not a success). An
episode stops at its first unsafe answer (P(safe) < 0.5) or after ``game.turns`` turns.

What comes out is a :class:`~sparring.game.rollout.Rollout` laid out turn by turn: block t holds
every episode's turn t, in the order of a single-turn step (each seed's attacks side by side),
so the attacker's groups (its samples of one seed) stay together within a block. An episode
that has already stopped still has a row in later blocks, played by no one: a copy of a played
row of the block with ``live`` False, which carries no reward, no loss and no figure. Only the
episodes still going are generated, judged and paid for.

When the defender learns, each live dialogue is answered ``samples_per_prompt`` times (the RLOO
group) and continues with its first answer. Benign prompts and seeds mixed into a defend batch
stay single prompts after the dialogue rows. Rewards over turns: :mod:`sparring.game.rewards`.
"""

from __future__ import annotations

import numpy as np
import torch

from sparring.game.rollout import Rollout, Rollouts
from sparring.judges import JudgeOutput
from sparring.judges.base import THRESHOLD  # below it an answer is unsafe: the episode ends
from sparring.players.templates import Dialogue
from sparring.rl.batch import Generation, slice_generation, stack_generations
from sparring.runtime import gather


def rows_of(gen, index: list[int]):
    """Rows ``index`` of a generation (a model's :class:`Generation`, or a served player's
    answers, which carry texts, inputs and a response mask)."""
    if isinstance(gen, Generation):
        return slice_generation(gen, torch.as_tensor(index, dtype=torch.long))
    return type(gen)(
        [gen.texts[i] for i in index],
        [gen.inputs[i] for i in index],
        gen.response_mask[index],
        [gen.blocked[i] for i in index] if gen.blocked is not None else None,
    )


def stack(parts: list, pad_id: int | None):
    """Blocks of rows as one (:func:`~sparring.rl.batch.stack_generations` for models)."""
    if isinstance(parts[0], Generation):
        return stack_generations(parts, pad_id)
    width = max(p.response_mask.shape[1] for p in parts)
    mask = torch.cat(
        [
            torch.nn.functional.pad(p.response_mask, (0, width - p.response_mask.shape[1]))
            for p in parts
        ]
    )
    blocked = [b for p in parts for b in (p.blocked or [False] * len(p.texts))]
    return type(parts[0])(
        [t for p in parts for t in p.texts], [t for p in parts for t in p.inputs], mask, blocked
    )


def block_index(live: np.ndarray, k: int = 1) -> list[int]:
    """Where each of a block's rows comes from, over every episode (``k`` rows each): a live
    episode's rows as generated (live episodes only, in order), a stopped one's a copy of the
    block's first rows."""
    where = np.cumsum(live) - 1
    return [int(where[e]) * k + j if live[e] else j for e in range(len(live)) for j in range(k)]


class DialogueRollouts(Rollouts):
    """:class:`~sparring.game.rollout.Rollouts` whose steps are conversations."""

    def play(self, stage: str, timer, step: int = 0) -> Rollout:
        return play_dialogues(self, stage, timer, step)


def play_dialogues(rollouts: Rollouts, stage: str, timer, step: int) -> Rollout:
    """One step of multi-turn play on this rank (``rollouts`` holds the players, judge and
    novelty)."""
    cfg = rollouts.cfg
    per_rank = cfg.game.batch_size // rollouts.world
    seeds = rollouts._mine(rollouts.seeds.sample(cfg.game.batch_size), per_rank)
    k_att = cfg.attacker.rl.samples_per_prompt if stage == "attack" else 1
    att_seeds = [s for s in seeds for _ in range(k_att)]
    n = len(att_seeds)
    defending = stage == "defend" and rollouts.defender.trainable
    k_def = cfg.defender.rl.samples_per_prompt if defending else 1
    attacker, defender = rollouts.attacker, rollouts.defender

    turns: list[list[str]] = [[] for _ in range(n)]  # each episode's (attack, answer, ...)
    live = np.ones(n, dtype=bool)
    blocks: dict[str, list] = {k: [] for k in ("att", "def", "raw", "attacks", "fallback")}
    blocks.update(live=[], judged=[], dialogues=[])
    for t in range(cfg.game.turns):
        if not live.any():
            break
        idx = np.flatnonzero(live)
        with timer("generate/attacker"):
            att_in = [Dialogue((att_seeds[e], *turns[e])) for e in idx]
            att_gen = attacker.generate(att_in)
        cleaned = attacker.clean_attacks(att_gen, [att_seeds[e] for e in idx])
        dialogues = [Dialogue((*turns[e], a)) for e, a in zip(idx, cleaned.texts, strict=True)]
        prompts = [d for d in dialogues for _ in range(k_def)]
        draws = [f"step-{step}/rank-{rollouts.rank}/turn-{t}/{i}" for i in range(len(prompts))]
        with timer("generate/defender"):
            def_gen = defender.generate(prompts, draws=draws)
        behaviours = [att_seeds[e] for e in idx for _ in range(k_def)]
        with timer("judge"):
            judged = rollouts.score(behaviours, def_gen.texts)
        p_safe = np.asarray(judged.p_safe, dtype=np.float64)
        # the block over every episode: stopped ones are placeholders (live False)
        full = live.copy()
        pick, rows = block_index(full), block_index(full, k_def)
        blocks["att"].append(rows_of(att_gen, pick))
        blocks["def"].append(rows_of(def_gen, rows))
        kept = list(zip(pick, full.tolist(), strict=True))
        blocks["raw"] += [att_gen.texts[i] if ok else "" for i, ok in kept]
        blocks["attacks"] += [cleaned.texts[i] if ok else "" for i, ok in kept]
        blocks["fallback"] += [bool(cleaned.fallback[i]) and ok for i, ok in kept]
        blocks["dialogues"] += [dialogues[i] for i in pick]
        blocks["live"].append(full)
        blocks["judged"].append(_judged_rows(judged, rows, np.repeat(full, k_def)))
        for j, e in enumerate(idx):  # the dialogue goes on with the first answer
            turns[e] += [cleaned.texts[j], def_gen.texts[j * k_def]]
            if p_safe[j * k_def] < THRESHOLD:
                live[e] = False
    played = len(blocks["live"])
    with timer("novelty"):  # on whole dialogues: the attacker's turns of each episode
        whole = ["\n".join(tr[0::2]) for tr in turns]
        nov = rollouts.novelty.score(whole)
        penalty = rollouts.novelty.penalty(nov)

    direct, benign = rollouts.defend_extras(stage, seeds, per_rank)
    singles = [p for p in direct + benign for _ in range(k_def)]
    parts_def = list(blocks["def"])
    judged_parts = list(blocks["judged"])
    if singles:
        draws = [f"step-{step}/rank-{rollouts.rank}/single/{i}" for i in range(len(singles))]
        with timer("generate/defender"):
            single_gen = defender.generate(singles, draws=draws)
        with timer("judge"):
            judged_parts.append(rollouts.score(singles, single_gen.texts))
        parts_def.append(single_gen)
    live_rows = np.concatenate(blocks["live"])
    pad_att = getattr(attacker.tokenizer, "pad_token_id", 0)
    pad_def = getattr(getattr(defender, "tokenizer", None), "pad_token_id", 0)
    rollout = Rollout(
        stage=stage,
        seeds=att_seeds * played,
        attacks_per_seed=k_att,
        raw_attacks=blocks["raw"],
        attacks=blocks["attacks"],
        fallback=np.asarray(blocks["fallback"], dtype=bool),
        attacker_gen=stack(blocks["att"], pad_att),
        novelty={k: np.tile(v, played) for k, v in nov.items()},
        penalty=np.tile(penalty, played),
        direct=direct,
        benign=benign,
        prompts=[d.messages[-1] for d in blocks["dialogues"] for _ in range(k_def)] + singles,
        answers=k_def,
        defender_gen=stack(parts_def, pad_def),
        judged=JudgeOutput.concat(judged_parts),
        live=live_rows,
        dialogues=blocks["dialogues"],
        turns=played,
    )
    if rollouts.eval_judge is not None and cfg.evaluation.every_step:
        with timer("eval_judge"):
            rollouts._eval_judge(rollout)
    rollout.eval_figures.update(dialogue_figures(rollout))
    with timer("novelty"):
        rollouts.novelty.add(gather(whole, rollouts.world))
    return rollout


def _judged_rows(judged: JudgeOutput, rows: list[int], live: np.ndarray) -> JudgeOutput:
    """A block's verdicts over every episode: the live rows' as judged, NaN (and no label) for
    the placeholders."""
    out = judged.select(rows)
    for i in np.flatnonzero(~live):
        out.p_safe[i] = float("nan")
        for v in out.extras.values():
            v[i] = float("nan")
        for v in out.labels.values():
            v[i] = None
    return out


def dialogue_figures(rollout: Rollout) -> dict[str, float]:
    """How the step's episodes went: turns played per episode, the share that succeeded, and
    the success rate by turn (of the episodes still going at that turn)."""
    n = len(rollout.seeds) // rollout.turns
    live = rollout.live_attacks.reshape(rollout.turns, n)
    p = rollout.first_answers.reshape(rollout.turns, n)
    unsafe = live & (np.nan_to_num(p, nan=1.0) < THRESHOLD)
    out = {
        "dialogue/turns": float(live.sum(0).mean()),
        "dialogue/success": float(unsafe.any(0).mean()),
    }
    for t in range(rollout.turns):
        out[f"dialogue/asr/turn-{t + 1}"] = float(unsafe[t].sum() / max(live[t].sum(), 1))
    return out
