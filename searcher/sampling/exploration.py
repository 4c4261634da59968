"""Random interleaving: the start-up proposals, and one in EVERY after them, are drawn at random;
the others are the model's (TPE's).

Why: with a handful of measured trials TPE's good group is one or two of them, and its
proposals copy their categorical choices: when the start-up draws are all weak, TPE keeps their
head, optimiser and batch size while random draws go on to reach better regions. A model is only
as good as the region its data covers; keeping a share of proposals random lets the data reach
the regions the first draws missed, and costs little where the model is right (ASHA stops a bad
random draw after one epoch). BOHB draws a third of its
configurations at random for this reason (Falkner et al. 2018); SMAC interleaves random ones.

The random draws come from one seeded random sampler, start-up and interleaved alike, so a
search draws the same random configurations as `sampler="random"` with the same seed, in order:
the two differ only where the model proposes.
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from searcher.sampling.turns import TurnTaking

EVERY = 3  # after the start-up, one proposal in EVERY is random (BOHB's random fraction, 1/3)


class RandomInterleave(TurnTaking):
    """Wraps a model-based sampler: while the study holds fewer than `startup` trials, and for
    one proposal in `every` after that, proposes at random; otherwise asks the wrapped sampler
    (which should not need a start-up of its own)."""

    def __init__(self, inner: BaseSampler, seed: int | None, startup: int, every: int = EVERY):
        super().__init__(inner)
        self.startup, self.every = startup, every
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._modelled = 0  # proposals after the start-up, to interleave

    def _take(self, study: Study, trial: FrozenTrial) -> bool | None:
        """True on a random turn."""
        if not self._modelled:  # still in the start-up? Warm-started trials count: they are data
            earlier = [t for t in study.get_trials(deepcopy=False)
                       if t.number != trial.number and t.state != TrialState.WAITING]
            if len(earlier) < self.startup:
                return True
        self._modelled += 1
        return True if self._modelled % self.every == 0 else None

    def _value(self, plan: bool, study: Study, trial: FrozenTrial, param_name: str,
               param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._random.reseed_rng()
