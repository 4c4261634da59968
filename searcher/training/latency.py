"""A network's inference speed, measured on the device and threads it will run with.

Parameter counts and multiply-adds are proxies: two nets of equal multiply-adds can differ
severalfold in speed (memory traffic, kernel shapes, batch norm, pooling). So speed is timed:
warm-up first (allocators, cuDNN's algorithm choice, caches), then repeated forward passes in
eval mode without autograd, reported as percentiles of the single passes. Plain PyTorch.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

WARMUP = 10  # forward passes before timing the latency
MIN_RUNS = 50  # at least this many timed passes: the 95th percentile of 50 is not one outlier
MAX_RUNS = 500
MIN_TIME_S = 0.3  # and at least this long, so fast nets get more passes (up to MAX_RUNS)
THROUGHPUT_WARMUP = 3  # the throughput batch's passes are many images each
THROUGHPUT_RUNS = 10


class TooSlow(ValueError):
    """A net whose median latency breaks the search's bound: recorded, never trained."""

    def __init__(self, speed: "Speed", bound_ms: float):
        super().__init__(f"median latency {speed.latency_ms:.3g} ms at batch {speed.batch} on "
                         f"{speed.device} is over max_latency_ms={bound_ms:g}")
        self.speed = speed
        self.sizes: dict[str, float] = {}  # the net's params and multiply-adds, for the record
        self.excess = speed.latency_ms / bound_ms - 1.0  # as the driver's size limits count it


@dataclass(frozen=True)
class Speed:
    """What a search records per net and a promotion gates on."""

    latency_ms: float  # median time of one forward pass at `batch`
    latency_p95_ms: float  # its 95th percentile
    batch: int  # images per pass for the latency
    throughput_ips: float | None  # images per second at `throughput_batch` (median pass); None:
    # not measured, the latency being over the bound already
    throughput_batch: int
    runs: int  # timed passes behind the latency
    device: str  # "cpu" or "cuda"
    threads: int  # torch's intra-op threads while timing (what a CPU trial runs with)

    def metrics(self) -> dict[str, float]:
        """As metrics for a trial's run (numbers only; batch and device go to tags or params)."""
        measured = {"latency_ms": self.latency_ms, "latency_p95_ms": self.latency_p95_ms,
                    "throughput_ips": self.throughput_ips}
        return {k: v for k, v in measured.items() if v is not None}


def _timed_passes(model: Callable[[Any], Any], images: Any, device: str, warmup: int,
                  min_runs: int, max_runs: int, min_time_s: float) -> list[float]:
    """Seconds of each forward pass, after `warmup` untimed ones: at least `min_runs` and
    `min_time_s`, at most `max_runs`."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            model(images)
        sync()
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < max_runs:
            start = time.perf_counter()
            model(images)
            sync()
            times.append(time.perf_counter() - start)
            if len(times) >= min_runs and time.perf_counter() - began >= min_time_s:
                break
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def check_speed(speed: Speed, bound_ms: float | None) -> None:
    """Raise TooSlow if `speed` breaks `bound_ms` (None: no bound)."""
    if bound_ms is not None and speed.latency_ms > bound_ms:
        raise TooSlow(speed, bound_ms)


def measure_speed(model: nn.Module, image_shape: tuple[int, int, int], batch: int = 1,
                  throughput_batch: int = 64, device: str = "cpu",
                  bound_ms: float | None = None) -> Speed:
    """Time `model` (on `device`, left in the mode it was found in) on random images of
    `image_shape` (C, H, W): latency at `batch`, then throughput at `throughput_batch`. With
    `bound_ms`, a median latency over it raises TooSlow before the throughput is timed: a slow
    net's large batch would take seconds, for a net that will not be trained."""
    was_training = model.training
    model.eval()
    try:
        return measure_runner(model, lambda n: torch.rand(n, *image_shape, device=device), batch,
                              throughput_batch, device, torch.get_num_threads(), bound_ms)
    finally:
        model.train(was_training)


def measure_runner(run: Callable[[Any], Any], images: Callable[[int], Any], batch: int,
                   throughput_batch: int, device: str, threads: int,
                   bound_ms: float | None = None) -> Speed:
    """`measure_speed` for any forward pass `run(images(n))` (an nn.Module, an ONNX Runtime
    session's run): the same warm-up, passes and percentiles, so the figures compare."""
    passes = _timed_passes(run, images(batch), device, WARMUP, MIN_RUNS, MAX_RUNS, MIN_TIME_S)
    speed = Speed(latency_ms=statistics.median(passes) * 1e3,
                  latency_p95_ms=percentile(passes, 95) * 1e3, batch=batch,
                  throughput_ips=None, throughput_batch=throughput_batch, runs=len(passes),
                  device=device.split(":")[0], threads=threads)
    check_speed(speed, bound_ms)
    bulk = _timed_passes(run, images(throughput_batch), device, THROUGHPUT_WARMUP,
                         THROUGHPUT_RUNS, THROUGHPUT_RUNS, 0.0)
    return dataclasses.replace(speed, throughput_ips=throughput_batch / statistics.median(bulk))
