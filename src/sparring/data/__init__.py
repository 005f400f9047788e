"""Prompt sources: seed and benign prompt pools."""

from sparring.data.prompts import PromptPool, load_prompts

__all__ = ["PromptPool", "load_prompts"]
