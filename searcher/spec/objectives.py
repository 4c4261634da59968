"""What a search weighs its accuracy against: the pair of objectives its front is drawn on, and
the fixed reference point that makes hypervolumes comparable across searches.

Every search draws a front, even with one objective: its metric against the second objective if
one is set, else against latency (what a net is deployed under). The reference point is fixed by
the settings alone, never by the trials: the metric's worst meaningful value (chance accuracy,
or the loss of guessing) and the second objective's bound (max_latency_ms, max_params,
max_mmacs), so two searches with the same settings are scored on the same scale.
"""
from __future__ import annotations

import math

from searcher.spec.settings import METRICS, SECOND_OBJECTIVES, Settings

# The reference latency when no bound is set: slower nets than this add nothing to the
# hypervolume. A search that cares about latency sets max_latency_ms, and that is the reference.
REFERENCE_LATENCY_MS = 100.0


def front_objectives(settings: Settings) -> tuple[str, str]:
    """(metric, second): the trial metrics the front is drawn on."""
    second = settings.second_objective or "latency_ms"
    return settings.metric, SECOND_OBJECTIVES[second]


def directions(settings: Settings) -> tuple[str, str]:
    return METRICS[settings.metric], "min"


def reference_point(settings: Settings, num_classes: int) -> tuple[float, float]:
    """(metric, second) in their own units, no better than any net worth keeping."""
    worst = 1.0 / num_classes if settings.metric == "val_acc" else math.log(num_classes)
    second = front_objectives(settings)[1]
    bound = {"latency_ms": settings.max_latency_ms or REFERENCE_LATENCY_MS,
             "n_params": float(settings.max_params), "mmacs": settings.max_mmacs}[second]
    return worst, bound
