"""Timing a net: percentiles of real forward passes, and the bound that keeps a slow net out."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from searcher.training.latency import MIN_RUNS, TooSlow, check_speed, measure_speed, percentile
from searcher.training.model import build_model

SMALL = {"stages": [{"filters": 4}], "num_classes": 10}
LARGE = {"stages": [{"filters": 64, "convs": 2}, {"filters": 128, "convs": 2}], "num_classes": 10}


def test_percentile_interpolates_as_numpy_does():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0


def test_a_larger_net_times_slower_and_the_model_is_left_as_it_was():
    torch.set_num_threads(1)
    small, large = build_model(SMALL), build_model(LARGE)
    small.train()
    fast = measure_speed(small, (3, 32, 32), batch=1, throughput_batch=8)
    slow = measure_speed(large, (3, 32, 32), batch=1, throughput_batch=8)
    assert small.training  # put back in training mode
    assert fast.runs >= MIN_RUNS and fast.latency_p95_ms >= fast.latency_ms > 0
    assert slow.latency_ms > 3 * fast.latency_ms  # about 100x the multiply-adds
    assert fast.throughput_ips > slow.throughput_ips
    assert (fast.batch, fast.throughput_batch, fast.device, fast.threads) == (1, 8, "cpu", 1)
    assert set(fast.metrics()) == {"latency_ms", "latency_p95_ms", "throughput_ips"}


def test_the_passes_are_timed_in_eval_mode_without_autograd():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled(), tuple(x.shape)))
            return x.mean()

    measure_speed(Probe(), (3, 8, 8), batch=2, throughput_batch=5)
    assert {s[:2] for s in seen} == {(False, False)}
    assert {s[2] for s in seen} == {(2, 3, 8, 8), (5, 3, 8, 8)}


def test_a_net_over_the_bound_is_refused_with_by_how_much():
    speed = measure_speed(build_model(SMALL), (3, 32, 32), throughput_batch=4)
    check_speed(speed, None)  # no bound
    check_speed(speed, speed.latency_ms * 2)
    with pytest.raises(TooSlow, match="over max_latency_ms") as caught:
        check_speed(speed, speed.latency_ms / 4)
    assert caught.value.excess == pytest.approx(3.0)


def test_with_a_bound_a_slow_net_is_refused_before_its_throughput_is_timed():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return x.mean()

    with pytest.raises(TooSlow) as caught:
        measure_speed(Probe(), (3, 8, 8), batch=1, throughput_batch=64, bound_ms=1e-9)
    assert set(seen) == {1}  # the batch of 64 never ran
    assert caught.value.speed.throughput_ips is None
    assert set(caught.value.speed.metrics()) == {"latency_ms", "latency_p95_ms"}
