"""Local search around the incumbent: every other proposal is the best trial so far with
one or two of its choices changed.

Why: a CPU search gets few proposals, and a density model over ~25 dimensions learns little
from few points: TPE's proposals take the best network's broad traits (its optimiser, batch norm)
but differ from it in many choices at once, and fall behind it. Changing one or two choices of
the best network found is the other half of what wins at small budgets: local search and
regularised evolution are hard baselines to beat in architecture search (White et al. 2021,
"Local search is state of the art for NAS"; Real et al. 2019). The other proposals stay the
wrapped sampler's (TPE), which explores.

Used only in a space with hand-made baselines (`samplers.make_sampler`), where the incumbent
starts as the best of them: a network its author chose is a good point to search around, and
the best of a few random start-up proposals often is not (local search exploits its region,
however weak).

The incumbent is the best trial at the common epoch that `fidelity.rung_view` compares trials at,
by accuracy alone: early on the median cost is a tutorial net's, and weighing cost there would
rank a better but costlier baseline below a weaker tutorial net. A changed choice always takes
another value: a categorical another category, a number a step of about a quarter of its range
(on its log scale where it has one). A parameter the incumbent lacks (the choices a changed
`stages` or `optimizer` opens), or whose range the change moved, is drawn at random.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from searcher.sampling.fidelity import rung_view
from searcher.sampling.turns import TurnTaking

EVERY = 2  # one proposal in EVERY (enqueued points aside) is a change of the incumbent
MAX_CHANGES = 2  # choices changed per proposal: 1 or 2, alike
STEP = 0.25  # a number moves by a normal step of this share of its (log) range


class IncumbentSearch(TurnTaking):
    """Wraps a sampler: every EVERY-th proposal, once `startup` trials are measured, changes one
    or two choices of the incumbent; the others are the wrapped sampler's. Enqueued points (the
    baselines) are left alone and not counted."""

    def __init__(self, inner: BaseSampler, seed: int | None, startup: int):
        super().__init__(inner)
        self.startup = startup
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._turn = 0  # proposals so far (enqueued points aside), to alternate

    def _take(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        """The incumbent's values with one or two changed, on this layer's turns."""
        if "fixed_params" in trial.system_attrs:  # an enqueued point (a baseline)
            return None
        self._turn += 1
        if (self._turn - 1) % EVERY:  # the wrapped sampler's turn: no view to build
            return None
        view = rung_view(study)
        measured = view.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if len(measured) < self.startup or all(t.state != TrialState.COMPLETE for t in measured):
            return None  # still the wrapped sampler's start-up
        return mutated(view.best_trial, self._rng)

    def _value(self, plan: dict[str, Any], study: Study, trial: FrozenTrial, param_name: str,
               param_distribution: BaseDistribution) -> Any:
        if param_name in plan and _fits(param_distribution, plan[param_name]):
            return plan[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._random.reseed_rng()
        self._rng = np.random.RandomState()


def mutated(trial: FrozenTrial, rng: np.random.RandomState) -> dict[str, Any]:
    """`trial`'s parameter values with one or two of them changed to another value."""
    names = sorted(n for n in trial.params if _changeable(trial.distributions[n]))
    values = dict(trial.params)
    changes = min(len(names), int(rng.randint(1, MAX_CHANGES + 1)))
    for name in rng.choice(names, size=changes, replace=False) if changes else ():
        values[name] = _neighbour(trial.distributions[name], values[name], rng)
    return values


def _changeable(d: BaseDistribution) -> bool:
    if isinstance(d, CategoricalDistribution):
        return len(d.choices) > 1
    return d.high > d.low


def _fits(d: BaseDistribution, value: Any) -> bool:
    try:
        return d._contains(d.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


def _neighbour(d: BaseDistribution, value: Any, rng: np.random.RandomState) -> Any:
    """Another value of `d` near `value`: another category, or a step on the (log) scale."""
    if isinstance(d, CategoricalDistribution):
        others = [c for c in d.choices if c != value]
        return others[rng.randint(len(others))]
    assert isinstance(d, (IntDistribution, FloatDistribution))
    scale = (math.log, math.exp) if d.log else (float, float)
    low, high, x = scale[0](d.low), scale[0](d.high), scale[0](value)
    x += rng.normal(0.0, STEP * (high - low))
    x = 2 * low - x if x < low else 2 * high - x if x > high else x  # reflected off a bound
    new = min(max(scale[1](x), d.low), d.high)  # exp(log(x)) may round past a bound
    step = d.step or (1 if isinstance(d, IntDistribution) else None)
    if step is not None:  # on the grid, and off the old value: a step up or down, whichever fits
        new = d.low + round((new - d.low) / step) * step
        if new == value:
            up, down = value + step <= d.high, value - step >= d.low
            new = value + step if up and (not down or rng.rand() < 0.5) else value - step
    return int(new) if isinstance(d, IntDistribution) else float(new)
