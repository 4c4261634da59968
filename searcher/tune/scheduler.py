"""ASHA that lets the space's hand-made baselines train all their epochs.

A baseline is the reference the search is judged against (how far the best sampled network
beats the tutorials' nets), so it must be trained as its author meant, not stopped at the first
rung because the trials beside it did better there. ASHA still records every baseline result in
its rungs, so the baselines keep setting the bar for the sampled trials.
"""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from searcher.spec.space import reproduces


class BaselineASHA(ASHAScheduler):
    """ASHAScheduler whose STOP decisions spare the trials that reproduce one of `baselines`
    (the space's hand-made points); saved with the experiment, so plain data only."""

    def __init__(self, baselines: list[dict[str, Any]], **asha: Any):
        super().__init__(**asha)
        self.baselines = baselines

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if (action == TrialScheduler.STOP
                and any(reproduces(trial.config, point) for point in self.baselines)
                and result.get(self._time_attr, 0) < self._max_t):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action
