"""The Optuna samplers a search can use, by name: TPE by default, random as the baseline."""
from __future__ import annotations

import warnings

import optuna

from searcher.settings import SAMPLERS

# Random proposals TPE waits for before it models (on top of the space's baselines, which it
# learns from too). Optuna's default, 10, suits cheap trials; a CPU search runs 20-40 trials, and
# the quality benchmark traced the cost: with 6, TPE's first modelled proposal came after ~25%
# of the budget and its result after ~45%, so the first half of TPE's and random's anytime
# curves were the same. TPE's estimators keep a prior component, so it still explores.
RANDOM_STARTUP = 3


def make_sampler(name: str, seed: int, n_baselines: int = 0) -> optuna.samplers.BaseSampler:
    """A seeded sampler. TPE is multivariate over groups of parameters that occur together (a
    conditional space's branches), with the constant liar so that trials running in parallel are
    not proposed twice."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              constant_liar=True,
                                              n_startup_trials=n_baselines + RANDOM_STARTUP)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
