"""A multi-fidelity adapter for Optuna samplers: the model compares trials at a common epoch.

Under ASHA, trials stop at different epochs. Optuna's TPE ranks every COMPLETE trial above every
PRUNED one, then pruned ones by how deep they got, and its constant liar counts every running
trial as bad. In a search that meant: the first trials (ASHA promotes early trials easily, having
little to compare them with) completed and became TPE's "good" group, however weak, while the
best network, still training, was counted as bad. Traced in the 20-minute CIFAR-10 search
(BENCHMARKS.md): for ten minutes TPE imitated the two tutorial nets.

`RungSampler` shows the wrapped sampler the study as seen at one *comparison epoch*, as BOHB
does with budgets: the deepest epoch that enough trials (finished or still running) reached.
- a trial that reached it, running or not: COMPLETE, with its value at that epoch;
- a trial stopped before it: PRUNED with its values (it lost against others at an earlier rung);
- a trial running that has not reached it: RUNNING, for the constant liar;
- infeasible, failed and waiting trials: as they are.
The study itself keeps the truth (PRUNED, COMPLETE, intermediate values); only the sampler's view
changes, rebuilt for each proposal, so the comparison epoch deepens as the search goes on.
"""
from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

# The comparison epoch is the deepest one reached by at least this many trials, and by at least
# this share of the trials measured so far: enough that TPE's good group (its top ~10%) is
# picked from several, not handed to the first few that ASHA promoted unopposed.
MIN_TRIALS_AT_RUNG = 6
MIN_SHARE_AT_RUNG = 0.2


def comparison_epoch(trials: list[FrozenTrial]) -> int | None:
    """The deepest epoch reached by enough measured trials; None while nothing is measured."""
    depths = sorted((max(t.intermediate_values) for t in trials if _measured(t)), reverse=True)
    if not depths:
        return None
    need = max(MIN_TRIALS_AT_RUNG, math.ceil(MIN_SHARE_AT_RUNG * len(depths)))
    return depths[min(need, len(depths)) - 1]


def rung_view(study: Study) -> Study:
    """An in-memory copy of `study` whose trials are reframed at the comparison epoch. Trials
    keep their numbers (they are added in order), so a trial of `study` is found by number."""
    trials = study.get_trials(deepcopy=False)
    epoch = comparison_epoch(trials)
    storage = optuna.storages.InMemoryStorage()  # create_study would log each view at INFO
    storage.create_new_study(study.directions, "rung-view")
    view = optuna.load_study(study_name="rung-view", storage=storage)
    view.add_trials([_reframed(t, epoch) for t in trials])
    return view


def _measured(t: FrozenTrial) -> bool:
    feasible = all(v <= 0 for v in t.constraints.values())
    return (feasible and bool(t.intermediate_values)
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))


def _reframed(t: FrozenTrial, epoch: int | None) -> FrozenTrial:
    state, value = t.state, t.value if t.state == TrialState.COMPLETE else None
    if epoch is not None and _measured(t):
        if epoch in t.intermediate_values:
            state, value = TrialState.COMPLETE, t.intermediate_values[epoch]
        elif t.state == TrialState.COMPLETE:  # all its epochs, fewer than the others' (warm start)
            state, value = TrialState.PRUNED, None
    return optuna.trial.create_trial(
        state=state, value=value, params=t.params, distributions=t.distributions,
        user_attrs=t.user_attrs, system_attrs=t.system_attrs,
        intermediate_values=t.intermediate_values)


class RungSampler(BaseSampler):
    """Wraps a sampler (TPE) so that it models `rung_view(study)` instead of the study."""

    def __init__(self, inner: BaseSampler):
        self.inner = inner
        self._view: tuple[int, Study] | None = None  # (trial number, its view) for one proposal

    def _view_for(self, study: Study, trial: FrozenTrial) -> tuple[Study, FrozenTrial]:
        if self._view is None or self._view[0] != trial.number:
            self._view = (trial.number, rung_view(study))
        view = self._view[1]
        return view, view.get_trials(deepcopy=False)[trial.number]

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(*self._view_for(study, trial))

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(*self._view_for(study, trial), search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        view, mine = self._view_for(study, trial)
        return self.inner.sample_independent(view, mine, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._view = None
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def __getstate__(self) -> dict[str, Any]:  # the searcher pickles the study with its sampler
        return {**self.__dict__, "_view": None}
