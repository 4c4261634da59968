"""Optuna's proposal time against the study's history: the product's sampler on the real space.

TPE (multivariate, grouped, as `samplers.tpe(0)` builds it for the default sampler's modelled
turns, inside the `fidelity.RungSampler` view) rebuilds its model from every finished trial for
each proposal (the default's random turns, one in three, cost next to nothing), so
the driver's time per new trial grows with the search. Measured without training: a study is
filled with finished trials of the space (random proposals, told with the intermediate values
ASHA's rungs would leave: most stopped at the first rung, one in 27 runs to the end), then one
proposal (`study.ask()` plus the space's suggest calls) is timed `repeats` times at each size.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import random
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

    from searcher.samplers import tpe
    from searcher.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    study = optuna.create_study(sampler=tpe(0), direction="maximize")  # its modelled turns
    ms: dict[str, float] = {}
    for size in sorted(sizes):
        fill(study, space, size)
        times = sorted(_propose(study, space) for _ in range(repeats))
        ms[str(size)] = round(1000 * times[len(times) // 2], 1)
    profile = None
    if ms and ms[str(max(sizes))] > GOAL_ASK_MS:
        profiler = cProfile.Profile()
        profiler.runcall(_propose, study, space)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
        profile = "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-5000:]
    return {"ask_ms": ms, "repeats": repeats, "profile": profile}
