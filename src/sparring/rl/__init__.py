"""RL for both players: PPO with GAE, and critic-free RLOO / GRPO."""
