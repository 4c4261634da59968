"""ASHA spares the space's baselines: a real ASHAScheduler on real (stub) Tune trials."""
from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from searcher.tune.scheduler import BaselineASHA

BASELINE = {"filters": 32, "lr": 0.1}


def asha(cls, **extra):
    scheduler = cls(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, **extra)
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def decisions(scheduler):
    """Three strong sampled trials reach epoch 1, then the weaker baseline and a weak sampled one."""
    trials = [Trial("t", config={"filters": 64, "lr": 0.01 * i}, stub=True) for i in range(3)]
    baseline = Trial("t", config={**BASELINE, "batch_size": 64}, stub=True)
    weak = Trial("t", config={"filters": 8, "lr": 0.3}, stub=True)
    for trial in [*trials, baseline, weak]:
        scheduler.on_trial_add(None, trial)
    for trial in trials:
        scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": 0.6})
    return {"baseline": scheduler.on_trial_result(None, baseline, {"epoch": 1, "val_acc": 0.3}),
            "weak": scheduler.on_trial_result(None, weak, {"epoch": 1, "val_acc": 0.3}),
            "baseline_at_max": scheduler.on_trial_result(None, baseline,
                                                         {"epoch": 9, "val_acc": 0.5})}


def test_asha_stops_a_weak_baseline_at_the_first_rung():
    assert decisions(asha(ASHAScheduler))["baseline"] == TrialScheduler.STOP


def test_the_baseline_asha_lets_it_train_and_still_stops_the_others():
    seen = decisions(asha(BaselineASHA, baselines=[BASELINE]))
    assert seen["baseline"] == TrialScheduler.CONTINUE
    assert seen["weak"] == TrialScheduler.STOP
    assert seen["baseline_at_max"] == TrialScheduler.STOP  # its last epoch ends it as usual


def pareto_asha(**extra):
    from searcher.tune.scheduler import ParetoASHA
    return ParetoASHA(baselines=extra.pop("baselines", []), metric="val_acc", mode="max",
                      objective="latency_ms", max_t=9, grace_period=1, reduction_factor=3,
                      time_attr="epoch")


def test_pareto_asha_rungs_are_those_of_asha():
    assert list(pareto_asha().rungs) == [1, 3]  # grace 1, factor 3, below max_t 9


def test_pareto_asha_keeps_the_fast_and_the_accurate_and_stops_the_dominated():
    scheduler = pareto_asha()
    trial = {name: Trial("t", config={"name": name}, stub=True)
             for name in ("accurate", "fast", "middle", "dominated", "slow_bad")}
    seen = {}
    for name, acc, ms in (("accurate", 0.7, 5.0), ("fast", 0.4, 0.5), ("middle", 0.6, 2.0),
                          ("dominated", 0.5, 3.0), ("slow_bad", 0.3, 9.0)):
        seen[name] = scheduler.on_trial_result(None, trial[name],
                                               {"epoch": 1, "val_acc": acc, "latency_ms": ms})
    # The first always goes on (nothing to compare); the fast one is a front end (both ends of
    # a front are kept); with 4 at the rung the top ceil(4/3) = 2 go on: "middle" is on the front
    # but crowded between the ends; "dominated" and "slow_bad" are dominated
    assert seen == {"accurate": "CONTINUE", "fast": "CONTINUE", "middle": "STOP",
                    "dominated": "STOP", "slow_bad": "STOP"}
    # a trial is ranked once per rung, at the first result that reaches it
    assert scheduler.on_trial_result(None, trial["fast"], {"epoch": 2, "val_acc": 0.1,
                                                           "latency_ms": 0.5}) == "CONTINUE"
    assert scheduler.on_trial_result(None, trial["fast"], {"epoch": 9, "val_acc": 0.5,
                                                           "latency_ms": 0.5}) == "STOP"  # max_t


def test_pareto_asha_compares_at_the_rung_not_across_rungs():
    """A trial at rung 3 is not held against another's value at rung 1."""
    scheduler = pareto_asha()
    a, b = (Trial("t", config={"i": i}, stub=True) for i in range(2))
    assert scheduler.on_trial_result(None, a, {"epoch": 1, "val_acc": 0.9,
                                               "latency_ms": 1.0}) == "CONTINUE"
    assert scheduler.on_trial_result(None, b, {"epoch": 3, "val_acc": 0.5,
                                               "latency_ms": 1.0}) == "CONTINUE"
    assert set(scheduler.rungs[3]) == {b.trial_id} and set(scheduler.rungs[1]) == {a.trial_id}


def test_pareto_asha_spares_baselines_and_ignores_infeasible_results():
    scheduler = pareto_asha(baselines=[BASELINE])
    best = Trial("t", config={"filters": 64}, stub=True)
    baseline = Trial("t", config={**BASELINE, "batch_size": 64}, stub=True)
    too_slow = Trial("t", config={"filters": 512}, stub=True)
    scheduler.on_trial_result(None, best, {"epoch": 1, "val_acc": 0.8, "latency_ms": 0.1})
    assert scheduler.on_trial_result(None, baseline, {"epoch": 1, "val_acc": 0.3,
                                                      "latency_ms": 1.0}) == "CONTINUE"
    assert scheduler.on_trial_result(None, too_slow, {"epoch": 1, "val_acc": 0.1, "infeasible": 1,
                                                      "latency_ms": 50.0}) == "CONTINUE"
    assert too_slow.trial_id not in scheduler.rungs[1]
