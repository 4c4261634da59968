"""Optuna's proposal time against the study's history: the product's sampler on the real space.

TPE (multivariate, grouped, as `samplers.tpe(0)` builds it for the default sampler's modelled
turns, inside the `fidelity.RungSampler` view) rebuilds its model from every finished trial for
each proposal (the default's random turns, one in three, cost next to nothing), so
the driver's time per new trial grows with the search. Measured without training: a study is
filled with finished trials of the space (random proposals, told with the intermediate values
ASHA's rungs would leave: most stopped at the first rung, one in 27 runs to the end), then one
proposal (`study.ask()` plus the space's suggest calls) is timed `repeats` times at each size.
At the largest size the same proposals are also timed with Optuna's own log normal CDF in turns
with scipy's (`searcher.sampling.fast_tpe`), so that change's worth is measured beside it (`log_ndtr_ms`).
"""
from __future__ import annotations

import cProfile
import io
import pstats
import random
import statistics
import time
from pathlib import Path
from typing import Any

GOAL_ASK_MS = 50.0


def _depth(number: int, epochs: int, grace: int, factor: int) -> int:
    """The epoch ASHA would stop trial `number` at: one in `factor` goes on past each rung."""
    rungs = [grace]
    while rungs[-1] * factor < epochs:
        rungs.append(rungs[-1] * factor)
    rungs.append(epochs)
    passed = 0
    while passed + 1 < len(rungs) and number % factor ** (passed + 1) == 0:
        passed += 1
    return rungs[passed]


def fill(study: Any, space: Any, size: int) -> None:
    """Add finished trials of `space` to `study` until it holds `size`."""
    import optuna
    s = space.settings
    filler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    while len(study.trials) < size:
        trial = filler.ask()
        space.sample(trial)
        filler.tell(trial, state=optuna.trial.TrialState.FAIL)  # only its parameters are kept
        depth = _depth(trial.number, s.epochs, s.grace_period, s.reduction_factor)
        value = 0.3 + 0.4 * random.Random(trial.number).random()
        last = depth == s.epochs
        study.add_trial(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions,
            intermediate_values={e: value * e / s.epochs for e in range(1, depth + 1)},
            state=optuna.trial.TrialState.COMPLETE if last else optuna.trial.TrialState.PRUNED,
            value=value if last else None))


def _propose(study: Any, space: Any) -> float:
    import optuna
    start = time.perf_counter()
    trial = study.ask()
    space.sample(trial)
    took = time.perf_counter() - start
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # out of the next proposal's model
    return took


def ask_latency(space_path: Path, sizes: list[int], repeats: int = 20) -> dict[str, Any]:
    """Median ms per proposal at each history size; above GOAL_ASK_MS at the largest, a profile
    of one proposal (top functions by cumulative time)."""
    import optuna

    from searcher.sampling import fast_tpe
    from searcher.sampling.samplers import tpe
    from searcher.spec.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    study = optuna.create_study(sampler=tpe(0), direction="maximize")  # its modelled turns
    ms: dict[str, float] = {}
    for size in sorted(sizes):
        fill(study, space, size)
        ms[str(size)] = _median_ms(study, space, repeats)
    # The same proposals with Optuna's own per-element log normal CDF (`fast_tpe`), in turns
    # with ours at the largest size: what that change is worth, measured beside it.
    own: dict[str, float] = {}
    if sizes:
        paired: dict[str, list[float]] = {"optuna": [], "scipy": []}
        for _ in range(3):
            for name, switch in (("optuna", fast_tpe.uninstall), ("scipy", fast_tpe.install)):
                switch()
                paired[name].append(_median_ms(study, space, max(repeats // 3, 1)))
        own = {"size": max(sizes), **{k: round(statistics.median(v), 1)
                                      for k, v in paired.items()}}
    profile = None
    if ms and ms[str(max(sizes))] > GOAL_ASK_MS:
        profiler = cProfile.Profile()
        profiler.runcall(_propose, study, space)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
        profile = "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-5000:]
    return {"ask_ms": ms, "repeats": repeats, "profile": profile, "log_ndtr_ms": own}


def _median_ms(study: Any, space: Any, repeats: int) -> float:
    times = sorted(_propose(study, space) for _ in range(repeats))
    return round(1000 * times[len(times) // 2], 1)
