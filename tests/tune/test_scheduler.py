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
