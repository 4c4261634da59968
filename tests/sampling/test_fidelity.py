"""The multi-fidelity adapter: TPE compares trials at a common epoch, on a real Optuna study."""
from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.trial import TrialState

from searcher.sampling.exploration import RandomInterleave
from searcher.sampling.fidelity import (
    COST_ATTR,
    MIN_TRIALS_AT_RUNG,
    RungSampler,
    comparison_epoch,
    rung_view,
)
from searcher.sampling.samplers import RANDOM_STARTUP, make_sampler, tpe

optuna.logging.set_verbosity(optuna.logging.WARNING)


def add(study, x, values, state, mmacs=None, latency_ms=None):
    """A trial at `x` that reported `values` (epochs 1, 2, ...) and is now in `state`."""
    study.enqueue_trial({"x": x})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    if mmacs is not None:
        trial.set_user_attr(COST_ATTR, mmacs)
    if latency_ms is not None:
        trial.set_user_attr("latency_ms", latency_ms)
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
    if state == TrialState.COMPLETE:
        study.tell(trial, values[-1])
    elif state == TrialState.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    return trial


def misleading_study(sampler):
    """What ASHA leaves a study with: early weak trials near x=0.1 ran all 4 epochs (little to
    compare them with), later strong ones near x=0.9 are still running at epoch 2, and many
    middling ones were stopped after epoch 1."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(3):
        add(study, 0.1 + 0.01 * i, [0.20, 0.25, 0.28, 0.30], TrialState.COMPLETE)
    for i in range(12):
        add(study, 0.3 + 0.03 * i, [0.22], TrialState.PRUNED)
    for i in range(6):
        add(study, 0.88 + 0.01 * i, [0.40, 0.55], TrialState.RUNNING)
    return study


def proposals(study, n=12):
    xs = []
    for _ in range(n):
        trial = study.ask()
        xs.append(trial.suggest_float("x", 0.0, 1.0))
        study.tell(trial, state=TrialState.FAIL)  # out of the way of the next proposal
    return xs


def test_comparison_epoch_is_the_deepest_that_enough_trials_reached():
    study = misleading_study(optuna.samplers.RandomSampler(seed=0))
    # 9 trials reached epoch 2 (3 complete, 6 running), only 3 epoch 4; 21 measured in all
    assert MIN_TRIALS_AT_RUNG <= 9
    assert comparison_epoch(study.get_trials()) == 2
    assert comparison_epoch([]) is None


def test_the_view_reframes_trials_at_the_comparison_epoch_and_keeps_their_numbers():
    study = misleading_study(optuna.samplers.RandomSampler(seed=0))
    infeasible = study.ask()
    infeasible.set_constraint("feasible", 3.0)
    study.tell(infeasible, state=TrialState.PRUNED)
    view = rung_view(study)
    seen = {t.number: t for t in view.get_trials()}
    assert [t.number for t in view.get_trials()] == [t.number for t in study.get_trials()]
    complete, pruned, running = seen[0], seen[3], seen[15]
    assert complete.state == TrialState.COMPLETE and complete.value == 0.25  # epoch 2, not 4
    assert pruned.state == TrialState.PRUNED and pruned.intermediate_values == {1: 0.22}
    assert running.state == TrialState.COMPLETE and running.value == 0.55
    assert seen[infeasible.number].constraints == {"feasible": 3.0}
    assert seen[infeasible.number].state == TrialState.PRUNED
    # the study itself is untouched
    assert study.trials[15].state == TrialState.RUNNING and study.trials[0].value == 0.30


def test_tpe_through_the_adapter_follows_the_strong_running_trials():
    # Plain TPE ranks the 3 weak complete trials first and counts the strong running ones as bad
    # (constant liar): it proposes near x=0.1. Through the adapter it proposes near x=0.9.
    plain = optuna.samplers.TPESampler(seed=3, multivariate=True, constant_liar=True,
                                       n_startup_trials=6)
    adapted = tpe(seed=3)
    assert isinstance(adapted, RungSampler)
    plain_x = statistics.median(proposals(misleading_study(plain)))
    adapted_x = statistics.median(proposals(misleading_study(adapted)))
    assert plain_x < 0.5 < adapted_x, (plain_x, adapted_x)


def test_the_adapter_pickles_without_its_view():
    import pickle

    sampler = tpe(seed=0)
    study = misleading_study(sampler)
    proposals(study, 1)
    again = pickle.loads(pickle.dumps(sampler))
    assert again._view is None and isinstance(again.inner, optuna.samplers.TPESampler)


def cost_study(sampler):
    """Cheap networks near x=0.1 (1 MMAC) reach 0.50 at epoch 2; networks near x=0.9, 64 times
    as costly, reach 0.52: a hair better at the same epoch, far worse per second."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(8):
        add(study, 0.1 + 0.01 * i, [0.40, 0.50 - 0.001 * i], TrialState.PRUNED, mmacs=1.0)
        add(study, 0.9 - 0.01 * i, [0.42, 0.52 - 0.001 * i], TrialState.PRUNED, mmacs=64.0)
    for i in range(8):
        add(study, 0.5, [0.1], TrialState.PRUNED, mmacs=8.0)
    return study


def test_the_view_discounts_a_value_by_its_cost_against_the_median():
    study = cost_study(optuna.samplers.RandomSampler(seed=0))
    plain, weighed = rung_view(study), rung_view(study, cost_weight=0.02)
    assert plain.trials[0].value == 0.50 and plain.trials[1].value == 0.52
    # median cost 8 MMAC: the cheap trial gains 3 doublings' worth, the costly one loses 3
    assert weighed.trials[0].value == pytest.approx(0.50 + 0.06)
    assert weighed.trials[1].value == pytest.approx(0.52 - 0.06)
    assert study.trials[1].intermediate_values[2] == 0.52  # the study keeps the truth


def test_tpe_weighing_cost_proposes_the_cheap_networks():
    plain_x = statistics.median(proposals(cost_study(tpe(seed=5))))
    weighed_x = statistics.median(proposals(cost_study(tpe(seed=5, cost_weight=0.02))))
    assert weighed_x < 0.5 < plain_x, (weighed_x, plain_x)


def test_baselines_are_tpes_start_up():
    with_baselines = make_sampler("tpe", seed=0, n_baselines=3).inner.inner  # local search, view
    without = make_sampler("tpe", seed=0)  # random interleaving, view, TPE
    assert with_baselines._n_startup_trials == 3
    assert isinstance(without, RandomInterleave) and without.startup == RANDOM_STARTUP
    assert without.inner.inner._n_startup_trials == 0


def test_past_the_window_tpe_models_the_best_and_the_most_recent_trials():
    from searcher.sampling.fidelity import KEEP_BEST, MAX_MODELLED
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    n = MAX_MODELLED + 100
    for i in range(n):  # trial i scores i / n at its only epoch, except the first 10: best of all
        add(study, i / n, [2.0 if i < 10 else i / n], TrialState.COMPLETE)
    running = add(study, 0.5, [], TrialState.RUNNING)  # no epoch yet: a liar, always kept
    seen = rung_view(study).get_trials()
    modelled = [t.number for t in seen if t.state == TrialState.COMPLETE]
    assert len(modelled) == MAX_MODELLED
    assert set(range(10)) <= set(modelled)  # the best, however old
    assert set(range(n - (MAX_MODELLED - KEEP_BEST), n)) <= set(modelled)  # the most recent
    assert seen[20].state == TrialState.FAIL and seen[20].params == study.trials[20].params
    assert seen[running.number].state == TrialState.RUNNING
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == n  # the study keeps them all


def pareto_study(sampler):
    """Nets at x in [0, 1], timed before training (user attribute latency_ms): x near 0.1 is
    fast and fair, near 0.9 slow and accurate, near 0.5 slow and poor (dominated by both)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(21):
        x = i / 20
        acc, ms = (0.3, 8.0) if 0.35 <= x <= 0.65 else ((0.5, 1.0) if x < 0.5 else (0.8, 5.0))
        add(study, x, [acc - 0.1, acc], TrialState.COMPLETE, latency_ms=ms)
    return study


def test_the_pareto_view_has_two_objectives_and_leaves_out_trials_without_the_second():
    study = optuna.create_study(direction="maximize")
    add(study, 0.2, [0.3, 0.4], TrialState.COMPLETE, latency_ms=2.5)
    add(study, 0.3, [0.5, 0.6], TrialState.COMPLETE)  # learnt from a search that timed nothing
    add(study, 0.4, [0.45], TrialState.RUNNING, latency_ms=1.0)
    add(study, 0.5, [], TrialState.RUNNING, latency_ms=1.0)  # timed, no epoch yet
    view = rung_view(study, objective="latency_ms")
    assert [d.name for d in view.directions] == ["MAXIMIZE", "MINIMIZE"]
    shown = view.get_trials(deepcopy=False)
    # at the comparison epoch, 1 (the running trial has reached no further), and its latency
    assert shown[0].state == TrialState.COMPLETE and shown[0].values == [0.3, 2.5]
    assert shown[1].state == TrialState.FAIL
    assert shown[2].state == TrialState.COMPLETE and shown[2].values == [0.45, 1.0]  # reached it
    assert shown[3].state == TrialState.RUNNING  # for the constant liar
    assert study.trials[0].values == [0.4]  # the study itself is untouched


def test_tpe_through_the_pareto_view_avoids_the_dominated_region():
    xs = proposals(pareto_study(tpe(seed=0, startup=0, objective="latency_ms")), n=30)
    dominated = sum(1 for x in xs if 0.35 <= x <= 0.65) / len(xs)
    assert dominated < 0.15, xs  # a third of the range, so about 0.33 at random
    alone = proposals(pareto_study(tpe(seed=0, startup=0)), n=30)  # accuracy alone: near 0.9
    assert statistics.mean(alone) > statistics.mean(xs)


def test_a_pareto_search_samples_with_tpe_on_both_objectives_behind_a_random_interleave():
    sampler = make_sampler("tpe", seed=0, n_baselines=2, objective="latency_ms")
    assert isinstance(sampler, RandomInterleave) and sampler.startup == RANDOM_STARTUP + 2
    assert sampler.inner.objective == "latency_ms" and sampler.inner.cost_weight == 0.0


def test_tpe_proposes_through_the_pareto_view_with_trials_asha_stopped_early():
    """Trials stopped at an earlier rung are pruned with epochs: Optuna's TPE ranks those by
    their last value in the study's one direction, which a two-objective view has not."""
    study = optuna.create_study(direction="maximize",
                                sampler=tpe(seed=0, startup=0, objective="latency_ms"))
    for i in range(6):
        add(study, 0.1 * i, [0.3, 0.4 + 0.01 * i], TrialState.COMPLETE, latency_ms=1.0 + i)
    for i in range(3):
        add(study, 0.05 + 0.1 * i, [0.2], TrialState.PRUNED, latency_ms=2.0)
    assert len(proposals(study, n=3)) == 3
