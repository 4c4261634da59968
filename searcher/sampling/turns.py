"""A sampler that takes some proposals' turns from the sampler it wraps.

The default sampler is TPE behind layers that each decide, before a trial, whether to propose
it themselves: local search around the incumbent (`local_search`), random interleaving
(`exploration`). On its own turns a layer fills every value itself (the wrapped sampler is not
asked: no model is built); on the others it passes everything through.
"""
from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


class TurnTaking(BaseSampler):
    """Subclasses say, before each trial, whether it is theirs (`_plan`: anything but None) and
    what value a parameter takes on their turns (`_value`)."""

    def __init__(self, inner: BaseSampler):
        self.inner = inner
        self._plan: tuple[int, Any] = (-1, None)  # (trial number, this layer's plan for it)

    def _take(self, study: Study, trial: FrozenTrial) -> Any:
        """The plan for proposing `trial` on this layer's turn; None: the wrapped sampler's."""
        raise NotImplementedError

    def _value(self, plan: Any, study: Study, trial: FrozenTrial, param_name: str,
               param_distribution: BaseDistribution) -> Any:
        raise NotImplementedError

    def _mine(self, trial: FrozenTrial) -> Any:
        return self._plan[1] if self._plan[0] == trial.number else None

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._plan = (trial.number, self._take(study, trial))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._mine(trial) is not None:
            return {}
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._mine(trial) is not None:
            return {}
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._mine(trial)
        if plan is None:
            return self.inner.sample_independent(study, trial, param_name, param_distribution)
        return self._value(plan, study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
