"""The early-stopping trace: per rung, how many sampled trials reached it, were stopped there
and went on; how every sampled trial ended."""
from __future__ import annotations

from types import SimpleNamespace

from searcher.bench.trace import how_ended, rung_epochs, trace, trace_line


def _rec(epochs, outcome, baseline=None, look=False):
    logged = set(range(0 if look else 1, epochs + 1))  # the steps in MLflow; 0: the first look
    return SimpleNamespace(epochs=epochs, outcome=outcome, baseline=baseline, logged=logged)


def test_each_rung_counts_who_reached_it_and_who_went_on():
    records = [_rec(1, "stopped early: at epoch 1"), _rec(1, "stopped early: at epoch 1"),
               _rec(2, "stopped early: at epoch 2"), _rec(4, "completed"),
               _rec(2, "stopped early: by the time budget at epoch 2"),
               _rec(0, "infeasible: 1.6 ms per image over the 1 ms bound"),
               _rec(4, "completed", baseline="bn_cnn")]  # a baseline: not the sampler's
    t = trace(records, {"grace_period": 1, "reduction_factor": 2, "epochs": 4})
    assert rung_epochs(1, 2, 4) == [1, 2]
    assert t["rungs"] == {"1": {"reached": 5, "stopped": 2, "went_on": 3},
                          "2": {"reached": 3, "stopped": 1, "went_on": 1}}
    assert t["ended"] == {"budget@2": 1, "completed": 1, "infeasible": 1, "stopped@1": 2,
                          "stopped@2": 1}
    assert trace_line(t).startswith("rungs epoch 1: 5 > 3, epoch 2: 3 > 1; ended budget@2 1")
    assert how_ended("") == "open" and how_ended("failed: TrainingDiverged") == "failed"


def test_the_first_look_is_a_rung_of_its_own():
    records = [_rec(0, "stopped early: at its first look", look=True),
               _rec(0, "stopped early: at its first look", look=True),
               _rec(1, "stopped early: at epoch 1", look=True), _rec(4, "completed", look=True),
               _rec(0, "stopped early: by the time budget at epoch 0", look=True),
               _rec(0, "infeasible: 1.6 ms per image over the 1 ms bound")]
    t = trace(records, {"grace_period": 1, "reduction_factor": 2, "epochs": 4,
                        "first_look": True})
    assert rung_epochs(1, 2, 4, first_look=True) == [0, 1, 2]
    assert rung_epochs(2, 2, 4, first_look=True) == [2]  # a grace of rf epochs: no look below one
    assert t["rungs"] == {"0": {"reached": 5, "stopped": 2, "went_on": 2},
                          "1": {"reached": 2, "stopped": 1, "went_on": 1},
                          "2": {"reached": 1, "stopped": 0, "went_on": 1}}
    assert t["ended"]["stopped@0"] == 2 and t["ended"]["budget@0"] == 1
