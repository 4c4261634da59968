"""The Optuna samplers a search can use, by name: TPE by default, random as the baseline.

Only samplers that model a conditional (define-by-run) space are offered. Optuna's GPSampler and
CmaEsSampler model the intersection search space, the parameters every trial has, and draw the
rest (here: stages 3-4, kernels, padding, residual, dense units, per-optimizer weight decay) at
random, so on these spaces they are partly random search; they are not offered until measured.
"""
from __future__ import annotations

import warnings

import optuna

from searcher.sampling import fast_tpe
from searcher.sampling.exploration import RandomInterleave
from searcher.sampling.fidelity import RungSampler
from searcher.sampling.local_search import IncumbentSearch
from searcher.spec.settings import SAMPLERS

# Random proposals TPE waits for before it models (on top of the space's baselines, which it
# learns from too): with fewer, TPE models sooner but tends to exploit a mediocre early region;
# Optuna's default of 10 spends too much of a 20-40 trial CPU search on random proposals (the
# quality benchmark's figures for 3 and 6: BENCHMARKS-LOG.md).
RANDOM_STARTUP = 6
# With hand-made baselines in the space, they are TPE's start-up: a user who wrote them has shown
# it the good region. Random start-up trials on top of them, on a CPU's few slots, would hold
# TPE back until too late for its proposals to train all their epochs within the budget.
RANDOM_STARTUP_AFTER_BASELINES = 0


def make_sampler(name: str, seed: int, n_baselines: int = 0, cost_weight: float = 0.0,
                 objective: str | None = None) -> optuna.samplers.BaseSampler:
    """A seeded sampler. TPE is multivariate over groups of parameters that occur together (a
    conditional space's branches), with the constant liar so that trials running in parallel are
    not proposed twice, and models the trials at a common epoch, their cost weighed in
    (`fidelity.RungSampler`). In a space with baselines every other proposal changes one or two
    choices of the best trial instead (`local_search.IncumbentSearch`); without them, the
    start-up and one proposal in three after it are random (`exploration.RandomInterleave`).

    With a second `objective` (a Pareto search) TPE models both objectives, cost is not weighed
    in (it is an objective), and local search is not used: its incumbent is the most accurate
    net, and changing one choice of it explores one end of the front only."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe" and objective is not None:
        return RandomInterleave(tpe(seed, 0, 0.0, objective), seed, RANDOM_STARTUP + n_baselines)
    if name == "tpe" and not n_baselines:  # the start-up is the random interleave's
        return RandomInterleave(tpe(seed, 0, cost_weight), seed, RANDOM_STARTUP)
    if name == "tpe":
        # Local search needs a good point to start from: a user's hand-made baseline is one; the
        # best of a few random proposals often is not, and local search exploits its region.
        startup = n_baselines + RANDOM_STARTUP_AFTER_BASELINES
        return IncumbentSearch(tpe(seed, startup, cost_weight), seed, startup)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def tpe(seed: int | None, startup: int = RANDOM_STARTUP, cost_weight: float = 0.0,
        objective: str | None = None) -> RungSampler:
    """The model the default sampler proposes with: TPE, multivariate over groups of parameters
    that occur together, with the constant liar, behind the rung view (and scipy's log normal
    CDF, `fast_tpe`)."""
    fast_tpe.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RungSampler(optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True,
            n_startup_trials=startup), cost_weight, objective)
