"""The early-stopping schedulers: ASHA for one objective, its Pareto form for two, both sparing
the space's hand-made baselines.

A baseline is the reference the search is judged against (how far the best sampled network
beats the tutorials' nets), so it must be trained as its author meant, not stopped at the first
rung because the trials beside it did better there. Its results still count in the rungs, so
the baselines keep setting the bar for the sampled trials.
"""
from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from searcher.pareto import minimised, ranking_keys
from searcher.spec.settings import Settings
from searcher.spec.space import reproduces

# What a trial reports as its training so far, in the schedulers' units: ASHA's clock.
CLOCK = "fidelity"


def units_per_epoch(settings: Settings) -> int:
    """ASHA's clock ticks in epochs, or, with first looks, in 1/reduction_factor epochs, so that
    the look (grace_period units) is the first rung of the same geometric ladder and every
    clock value stays a whole number."""
    return settings.reduction_factor if settings.first_look_fraction else 1


def clock(settings: Settings, epochs: int, looked: bool = False) -> int:
    """A trial's clock after `epochs` whole epochs, or after its first look."""
    return settings.grace_period if looked else epochs * units_per_epoch(settings)


def rungs(settings: Settings) -> dict[str, Any]:
    """The schedulers' ladder, in clock units: a rung at grace_period, then each
    reduction_factor times further, up to the last epoch (max_t)."""
    return {"time_attr": CLOCK, "max_t": clock(settings, settings.epochs),
            "grace_period": settings.grace_period, "reduction_factor": settings.reduction_factor}


def _spared(config: dict[str, Any], baselines: list[dict[str, Any]]) -> bool:
    return any(reproduces(config, point) for point in baselines)


class BaselineASHA(ASHAScheduler):
    """ASHAScheduler whose STOP decisions spare the trials that reproduce one of `baselines`
    (the space's hand-made points); saved with the experiment, so plain data only."""

    def __init__(self, baselines: list[dict[str, Any]], **asha: Any):
        super().__init__(**asha)
        self.baselines = baselines

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if (action == TrialScheduler.STOP and _spared(trial.config, self.baselines)
                and result.get(self._time_attr, 0) < self._max_t):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action


class ParetoASHA(FIFOScheduler):
    """Asynchronous successive halving on two objectives, as MOASHA (Schmucker et al. 2021):
    at each rung (grace_period x reduction_factor^k epochs) a trial goes on if it ranks in the
    top 1/reduction_factor of the trials that reached that rung so far, ranked by non-dominated
    sorting of (the metric at the rung, the second objective), ties within a front broken by
    crowding distance (NSGA-II), so that both ends of the front and its middle go on. The
    second objective is known before a trial trains (its latency, size or multiply-adds), so it
    is the same at every rung; only the metric is a rung's early value, and it is compared only
    with other trials' values at the same rung. Saved with the experiment: plain data only."""

    def __init__(self, baselines: list[dict[str, Any]], metric: str, mode: str, objective: str,
                 max_t: int, grace_period: int = 1, reduction_factor: int = 3,
                 time_attr: str = "training_iteration"):
        super().__init__()
        self.baselines, self.objective, self.time_attr = baselines, objective, time_attr
        self._metric, self._mode = metric, mode
        self.max_t, self.reduction_factor = max_t, reduction_factor
        self.rungs: dict[int, dict[str, tuple[float, float]]] = {}
        milestone = grace_period
        while milestone < max_t:
            self.rungs[milestone] = {}
            milestone *= reduction_factor

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # set at construction; Tune's are the same metric and mode

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if (result.get("infeasible") or result.get("failed") or self._metric not in result
                or self.objective not in result or self.time_attr not in result):
            return TrialScheduler.CONTINUE
        at = result[self.time_attr]
        if at >= self.max_t:
            return TrialScheduler.STOP
        point = minimised((float(result[self._metric]), float(result[self.objective])),
                          (self._mode, "min"))
        for milestone in sorted(self.rungs, reverse=True):  # the highest rung it has reached
            rung = self.rungs[milestone]
            if at < milestone or trial.trial_id in rung:
                continue
            rung[trial.trial_id] = point
            if not self.goes_on(rung, trial.trial_id) and not _spared(trial.config,
                                                                       self.baselines):
                return TrialScheduler.STOP
            break
        return TrialScheduler.CONTINUE

    def goes_on(self, rung: dict[str, tuple[float, float]], trial_id: str) -> bool:
        """Whether `trial_id` ranks in the top 1/reduction_factor of `rung` (the top one at
        least): fewer than that many trials rank strictly ahead of it. Ties go its way, as ASHA
        lets a value equal to its cutoff go on: two nets at the two ends of a front both do."""
        ids = list(rung)
        key = ranking_keys([rung[i] for i in ids])
        mine = key[ids.index(trial_id)]
        ahead = sum(1 for k in key if k < mine)
        return ahead < max(1, math.ceil(len(ids) / self.reduction_factor))

    def debug_string(self) -> str:
        return "ParetoASHA: " + ", ".join(f"rung {m}: {len(r)}" for m, r in self.rungs.items())
