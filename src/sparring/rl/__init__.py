"""RL for both players: PPO with GAE, and critic-free RLOO / GRPO.

Knows tensors, not players or games: :mod:`.core` holds the pure loss and advantage functions,
:mod:`.batch` the sampled-sequence batch, and :mod:`.trainer` one update of any
:class:`~sparring.rl.trainer.Learner` (a player is one).
"""
