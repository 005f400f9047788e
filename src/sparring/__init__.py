"""Sparring: align language models with a two-player game (GPO)."""

__version__ = "0.1.0"
