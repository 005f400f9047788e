"""Drivers that train in order to measure: the exploitability probe (a fresh attacker trained
against a frozen defender) and the paper's experiment (every arm over seeds, at equal compute,
with its tables). They call :mod:`sparring.game` to train and :mod:`sparring.evaluation` to
measure; nothing below them imports them.
"""
