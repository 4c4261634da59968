"""The search's objective: which way is better for its metric, said once for every user.

A metric and its direction ("max" or "min") are declared in the settings (`METRICS`); Tune,
Optuna, the leaderboard, confirmation and promotion all compare and sort through these.
"""
from __future__ import annotations


def better(value: float, than: float | None, mode: str) -> bool:
    """Whether `value` beats `than` (anything beats None) in the direction `mode`."""
    return than is None or (value > than if mode == "max" else value < than)


def sign(mode: str) -> float:
    """A factor that makes the best value the smallest, for sorting ascending."""
    return -1.0 if mode == "max" else 1.0


def optuna_direction(mode: str) -> str:
    return "maximize" if mode == "max" else "minimize"


def sql_order(mode: str) -> str:
    """The ORDER BY direction that puts the best first."""
    return "DESC" if mode == "max" else "ASC"
