"""Players: the attacker and the defender are one class, differing only in configuration.

- :mod:`.player`: :class:`~sparring.players.player.Player` (policy, frozen reference, value head,
  tokenizer, template; generation, scored forward passes, saving and export);
- :mod:`.modules`: the policy with its value head in one forward pass, the log-prob recorder;
- :mod:`.optim`: LoRA adapters, optimiser, learning-rate schedule;
- :mod:`.templates`: prompt formatting and the attack cleaner;
- :mod:`.loading`: tokenizers and causal LMs, offline when local;
- :mod:`.engine`: one Accelerate engine per trainable player (DeepSpeed, accumulation);
- :mod:`.endpoint`: a frozen player served behind an OpenAI-compatible endpoint.
"""
