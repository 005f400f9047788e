"""The game: rounds of defend and attack stages between two RL players.

- :mod:`.plan`: the run as data (which stage each step plays);
- :mod:`.rollout`: experience making (the attacker writes, novelty is scored, the defender
  answers, the judge scores);
- :mod:`.rewards`: each player's scalar reward from the judge and novelty;
- :mod:`.logbook`: metrics, samples, the progress bar and the run summary;
- :mod:`.checkpoint`: checkpoints and the game's random state;
- :mod:`.stopping`: Ctrl-C and SIGTERM stop a run after the step in progress, checkpointed;
- :mod:`.loop`: :class:`~sparring.game.loop.Game`, which sets a run up and plays its plan.

The update itself is :mod:`sparring.rl`'s; measuring the result is :mod:`sparring.evaluation`'s.
"""
