"""Whether a proposal can be trained within a search's limits, and by how much it misses.

The driver asks this of every proposal before it becomes a trial, so a network that cannot be
built costs a millisecond, not a slot, and the sampler is told by how far it missed.
"""
from __future__ import annotations

from typing import Any, Callable

from searcher.spec.params import ConfigError, split_params
from searcher.spec.settings import Settings
from searcher.training.model import InfeasibleArchitecture, feasible_cost, measure

# What "a feature map that vanishes" weighs against "x times over a limit" (excess 1.0 = twice
# the limit): such a network cannot be built at all.
VANISHING_MAP = 1.0

Check = Callable[[dict[str, Any]], "tuple[str, float] | None"]
Cost = Callable[[dict[str, Any]], "float | None"]


def proposal_check(settings: Settings, num_classes: int, image_shape: tuple[int, int, int]) -> Check:
    """A function of a proposal's parameters: None if it can be trained, else (reason, excess)."""
    channels, size = image_shape[0], image_shape[1]

    def check(params: dict[str, Any]) -> tuple[str, float] | None:
        try:
            arch, _ = split_params(params, num_classes=num_classes, in_channels=channels,
                                   image_size=size, epochs=settings.epochs)
        except ConfigError:  # a mistake in the space: the trial fails with it, visibly
            return None
        try:
            feasible_cost(arch, settings.max_params, settings.max_mmacs)
            return None
        except InfeasibleArchitecture as exc:
            reason = str(exc)
        try:
            cost = measure(arch)
        except InfeasibleArchitecture:
            return reason, VANISHING_MAP
        excess = max(cost.params / settings.max_params, cost.macs / (settings.max_mmacs * 1e6))
        return reason, excess - 1.0

    return check


def proposal_cost(settings: Settings, num_classes: int, image_shape: tuple[int, int, int]) -> Cost:
    """A function of a feasible proposal's parameters: its million multiply-adds per image (what
    the sampler weighs its accuracy against), None if that cannot be told."""
    channels, size = image_shape[0], image_shape[1]

    def cost(params: dict[str, Any]) -> float | None:
        try:
            arch, _ = split_params(params, num_classes=num_classes, in_channels=channels,
                                   image_size=size, epochs=settings.epochs)
            return measure(arch).macs / 1e6
        except (ConfigError, InfeasibleArchitecture):
            return None

    return cost
