"""A multi-fidelity adapter for Optuna samplers: the model compares trials at a common epoch.

Under ASHA, trials stop at different epochs. Optuna's TPE ranks every COMPLETE trial above every
PRUNED one, then pruned ones by how deep they got, and its constant liar counts every running
trial as bad. In a search that means: the first trials (ASHA promotes early trials easily, having
little to compare them with) complete and become TPE's "good" group, however weak, while the
best network, still training, counts as bad, so TPE imitates the first trials.

`RungSampler` shows the wrapped sampler the study as seen at one *comparison epoch*, as BOHB
does with budgets: the deepest epoch that enough trials (finished or still running) reached.
- a trial that reached it, running or not: COMPLETE, with its value at that epoch;
- a trial stopped before it: PRUNED with its values (it lost against others at an earlier rung);
- a trial running that has not reached it: RUNNING, for the constant liar;
- infeasible, failed and waiting trials: as they are.
Cost is weighed in (with `cost_weight` > 0): a trial's value at that epoch counts less by
`cost_weight` for each doubling of its multiply-adds over the median trial's (more for each
halving below it). At one epoch a larger network is simply ahead, so TPE, told accuracies alone,
drifts to costly networks and runs fewer trials in the same wall-clock budget. A time-budgeted
search wants accuracy per second, as cost-aware Bayesian optimisation (EI per unit cost) does.
The study itself keeps the truth (PRUNED, COMPLETE, intermediate values); only the sampler's view
changes, rebuilt for each proposal, so the comparison epoch deepens as the search goes on.

For a Pareto search (`objective`: a user attribute every measured trial carries, known before it
trains, such as its latency) the view has two objectives, the metric at the comparison epoch and
that attribute (minimised), and the wrapped sampler (TPE) splits good from bad by non-dominated
sorting. Optuna cannot take intermediate values in a multi-objective study, so the study stays
single-objective with its epochs, and only this view is multi-objective: no early-epoch value is
ever told as a final one.
"""
from __future__ import annotations

import copy
import math
import statistics
from typing import Any, Callable, Container

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

# The comparison epoch is the deepest one reached by at least this many trials, and by at least
# this share of the trials measured so far: enough that TPE's good group (its top ~10%) is
# picked from several, not handed to the first few that ASHA promoted unopposed.
MIN_TRIALS_AT_RUNG = 6
MIN_SHARE_AT_RUNG = 0.2
COST_ATTR = "mmacs"  # user attribute: a trial's million multiply-adds per image (its cost)
# TPE rebuilds its model (nearly all of it its Parzen estimators) from every finished trial for
# each proposal, so a proposal, on Tune's loop, takes longer as the search grows. Past
# MAX_MODELLED finished trials the view shows TPE a window: the KEEP_BEST best (its good group is
# at most 25) and the most recent ones; the rest are shown as failed, which TPE skips. The study
# keeps them all.
MAX_MODELLED = 150
KEEP_BEST = 50


def comparison_epoch(trials: list[FrozenTrial]) -> int | None:
    """The deepest epoch reached by enough measured trials; None while nothing is measured."""
    depths = sorted((max(t.intermediate_values) for t in trials if _measured(t)), reverse=True)
    if not depths:
        return None
    need = max(MIN_TRIALS_AT_RUNG, math.ceil(MIN_SHARE_AT_RUNG * len(depths)))
    return depths[min(need, len(depths)) - 1]


def rung_view(study: Study, cost_weight: float = 0.0, objective: str | None = None) -> Study:
    """A read-only study whose trials are those of `study` reframed at the comparison epoch,
    their values discounted by cost (`cost_weight` per doubling), under the same numbers (a
    trial of `study` is found in it by number). With `objective`, a two-objective study: each
    complete trial's value and its user attribute `objective`, minimised."""
    trials = study.get_trials(deepcopy=False)
    epoch = comparison_epoch(trials)
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    discount = _cost_discount(trials, sign * cost_weight)
    framed = _windowed([_reframed(t, epoch, discount) for t in trials], sign)
    directions = list(study.directions)
    if objective is not None:
        framed = [_with_objective(t, objective) for t in framed]
        directions.append(StudyDirection.MINIMIZE)
    storage = _Snapshot(framed, directions)
    return optuna.load_study(study_name=_Snapshot.NAME, storage=storage,
                             sampler=optuna.samplers.RandomSampler())


def _windowed(trials: list[FrozenTrial], sign: float) -> list[FrozenTrial]:
    """`trials` (reframed) with all but MAX_MODELLED finished ones shown as failed: the KEEP_BEST
    best complete ones and the most recent others are kept; running and waiting ones always."""
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if len(finished) <= MAX_MODELLED:
        return trials
    complete = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    best = sorted(complete, key=lambda t: -sign * t.value)[:KEEP_BEST]
    keep = {t.number for t in best}
    recent = [t for t in finished if t.number not in keep][-(MAX_MODELLED - len(keep)):]
    keep |= {t.number for t in recent}
    dropped = {t.number for t in finished} - keep
    return [_shown_as(t, TrialState.FAIL, None) if t.number in dropped else t for t in trials]


def _measured(t: FrozenTrial) -> bool:
    feasible = all(v <= 0 for v in t.constraints.values())
    return (feasible and bool(t.intermediate_values)
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))


def _cost_discount(trials: list[FrozenTrial], weight: float) -> Callable[[FrozenTrial], float]:
    """What to take off a trial's value for its cost: `weight` x log2(its cost / the median
    cost of the measured trials); nothing for a trial of unknown cost, or with weight 0."""
    costs = [t.user_attrs[COST_ATTR] for t in trials if _measured(t) and COST_ATTR in t.user_attrs]
    if not weight or not costs:
        return lambda t: 0.0
    median = statistics.median(costs)
    return lambda t: (weight * math.log2(t.user_attrs[COST_ATTR] / median)
                      if t.user_attrs.get(COST_ATTR, 0) > 0 and median > 0 else 0.0)


def _reframed(t: FrozenTrial, epoch: int | None,
              discount: Callable[[FrozenTrial], float]) -> FrozenTrial:
    state, value = t.state, t.value if t.state == TrialState.COMPLETE else None
    if epoch is not None and _measured(t):
        if epoch in t.intermediate_values:
            state, value = TrialState.COMPLETE, t.intermediate_values[epoch] - discount(t)
        elif t.state == TrialState.COMPLETE:  # all its epochs, fewer than the others' (warm start)
            state, value = TrialState.PRUNED, None
    return t if state == t.state and value == t.value else _shown_as(t, state, value)


def _with_objective(t: FrozenTrial, objective: str) -> FrozenTrial:
    """A complete trial of the view with its second objective beside its value; one without it
    (learnt from a search that did not record it) is left out, as failed. A pruned trial is
    shown without its epochs: TPE ranks pruned trials by their last value in the study's one
    direction, which a two-objective study has not (they all rank below the complete ones)."""
    if t.state == TrialState.PRUNED and t.intermediate_values:
        return _shown_as(t, TrialState.PRUNED, None, intermediate_values={})
    if t.state != TrialState.COMPLETE:
        return t
    second = t.user_attrs.get(objective)
    if second is None:
        return _shown_as(t, TrialState.FAIL, None)
    return _shown_as(t, TrialState.COMPLETE, [t.value, float(second)])


def _shown_as(t: FrozenTrial, state: TrialState, value: float | list[float] | None,
              intermediate_values: dict[int, float] | None = None) -> FrozenTrial:
    """`t` as the view shows it: in `state` with `value` (a list: one per objective), finished,
    the rest shared (its epochs too, unless `intermediate_values` is given)."""
    values = value if isinstance(value, list) else None
    return FrozenTrial(number=t.number, state=state, value=None if values else value,
                       values=values,
                       datetime_start=t.datetime_start,
                       datetime_complete=t.datetime_complete or t.datetime_start,
                       params=t.params, distributions=t.distributions, user_attrs=t.user_attrs,
                       system_attrs=t.system_attrs,
                       intermediate_values=(t.intermediate_values if intermediate_values is None
                                            else intermediate_values),
                       trial_id=t.number)


class _Snapshot(BaseStorage):
    """A storage over a fixed list of trials, numbered from 0, for samplers to read.

    Copying trials into an InMemoryStorage deep-copies each, for every proposal, at a cost that
    grows with the study; this shares the study's own frozen trials and copies only those
    reframed.
    The only write a sampler makes (TPE's constant liar shares its relative params as system
    attributes of the trial being proposed) is kept beside the trials."""

    NAME = "rung-view"

    def __init__(self, trials: list[FrozenTrial], directions: list[StudyDirection]):
        self._trials, self._directions = trials, list(directions)
        self._written: dict[int, dict[str, Any]] = {}

    def get_study_id_from_name(self, study_name: str) -> int:
        return 0

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.NAME

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._directions

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return {}

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return {}

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return next(t for t in self._trials if t._trial_id == trial_id)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._trials[trial_number]._trial_id

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._written.setdefault(trial_id, {})[key] = value

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the rung view of a study is read-only")

    create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _read_only
    get_all_studies = _read_only
    create_new_trial = set_trial_param = set_trial_state_values = _read_only
    set_trial_intermediate_value = set_trial_user_attr = _read_only


class RungSampler(BaseSampler):
    """Wraps a sampler (TPE) so that it models `rung_view(study, cost_weight, objective)`, not
    the study."""

    def __init__(self, inner: BaseSampler, cost_weight: float = 0.0,
                 objective: str | None = None):
        self.inner, self.cost_weight, self.objective = inner, cost_weight, objective
        self._view: tuple[int, Study] | None = None  # (trial number, its view) for one proposal

    def _view_for(self, study: Study, trial: FrozenTrial) -> tuple[Study, FrozenTrial]:
        if self._view is None or self._view[0] != trial.number:
            self._view = (trial.number, rung_view(study, self.cost_weight, self.objective))
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

    def __setstate__(self, state: dict[str, Any]) -> None:  # pickled before cost was weighed
        self.__dict__.update({"cost_weight": 0.0, "objective": None, **state})
