"""Local search around the incumbent, on real Optuna studies over the real CIFAR-10 space."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from searcher.sampling.fidelity import COST_ATTR
from searcher.sampling.local_search import MAX_CHANGES, IncumbentSearch, mutated
from searcher.sampling.samplers import RANDOM_STARTUP, make_sampler, tpe
from searcher.spec.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = load_space(Path(__file__).parents[2] / "spaces" / "cifar10.py")


def local(seed, cost_weight=0.0):
    """TPE with local search, after TPE's random start-up (the default wraps it only around
    a space's baselines)."""
    return IncumbentSearch(tpe(seed, cost_weight=cost_weight), seed, RANDOM_STARTUP)


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def flat(trial) -> dict:
    """A space without branches: a mutant differs from its parent in exactly its changes."""
    return {"x": trial.suggest_float("x", 0.0, 1.0), "y": trial.suggest_float("y", 0.0, 1.0),
            "n": trial.suggest_int("n", 1, 64, log=True),
            "c": trial.suggest_categorical("c", ["a", "b", "c"]),
            "stages": trial.suggest_int("stages", 2, 4)}


def run(study: optuna.Study, value, space=SPACE.sample, epochs=3,
        mmacs=None) -> optuna.trial.FrozenTrial:
    """Ask one proposal of `space`, report `value(params)` for each epoch, tell it."""
    trial = study.ask()
    params = space(trial)
    if mmacs is not None:
        trial.set_user_attr(COST_ATTR, mmacs(params))
    for epoch in range(1, epochs + 1):
        trial.report(value(params) * epoch / epochs, epoch)
    study.tell(trial, value(params))
    return study.trials[trial.number]


@pytest.mark.slow
def test_a_mutant_changes_one_or_two_choices_to_other_valid_values():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for seed in range(200):
        parent = run(study, lambda p: 0.5)
        child = mutated(parent, np.random.RandomState(seed))
        moved = changed(parent.params, child)
        assert 1 <= len(moved) <= MAX_CHANGES, moved
        for name in moved:  # another value, and one its distribution holds
            dist = parent.distributions[name]
            assert dist._contains(dist.to_internal_repr(child[name])), (name, child[name])


def test_every_other_modelled_proposal_is_a_change_of_the_best_trial():
    study = optuna.create_study(direction="maximize", sampler=local(seed=1))
    score = lambda p: p["x"] + p["y"]  # noqa: E731
    for _ in range(6):  # TPE's random start-up
        run(study, score, flat)
    moves = []
    for _ in range(10):
        best = study.best_trial.params
        moves.append(len(changed(run(study, score, flat).params, best)))
    assert all(1 <= m <= MAX_CHANGES for m in moves[::2]), moves  # the best, changed
    assert all(m > MAX_CHANGES for m in moves[1::2]), moves  # TPE's own: both floats differ


def test_the_incumbent_is_the_most_accurate_not_the_cheapest():
    # Cost is weighed: accuracy per multiply-add favours the cheap nets, but local search
    # changes the most accurate one (a costly net).
    study = optuna.create_study(direction="maximize",
                                sampler=local(seed=2, cost_weight=0.5))
    cheap = lambda p: p["stages"] == 2  # noqa: E731
    score = lambda p: 0.4 if cheap(p) else 0.5 + p["x"] / 2  # noqa: E731
    mmacs = lambda p: 1.0 if cheap(p) else 64.0  # noqa: E731
    for _ in range(6):
        run(study, score, flat, mmacs=mmacs)
    assert any(cheap(t.params) for t in study.trials) and study.best_trial.params["stages"] > 2
    best = study.best_trial.params
    assert 1 <= len(changed(run(study, score, flat, mmacs=mmacs).params, best)) <= MAX_CHANGES


def test_enqueued_points_are_left_alone_and_the_sampler_pickles():
    sampler = make_sampler("tpe", seed=3, n_baselines=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    baselines = list(SPACE.baselines.values())[:2]
    for params in baselines:
        study.enqueue_trial(params)
    for params in baselines:
        assert run(study, lambda p: 0.5).params == params  # not mutated, and not counted:
    assert isinstance(sampler, IncumbentSearch)  # with baselines, local search is on
    assert not isinstance(make_sampler("tpe", seed=3), IncumbentSearch)  # without, random interleaving
    again = pickle.loads(pickle.dumps(sampler))  # the searcher pickles it to resume
    study.sampler = again
    first = run(study, lambda p: 0.6)  # the first modelled proposal is a change
    assert 1 <= len(changed(first.params, baselines[0])) <= 2 * MAX_CHANGES
    assert study.trials[-1].state == TrialState.COMPLETE
