"""How busy the machine was while a search ran: the CPU it spent outside the search.

A search's figures are its sampler's only if the search had the machine: on a shared 2-core
machine another job's minutes become fewer nets trained, and every figure moves with them. Each
benchmark search records `load` beside its figures, and the reports flag a search that ran busy.

The search's processes are this one and its descendants: the local Ray it started, the trials,
a server it started. Their CPU is read every POLL_S while the search runs, so a process that
ends counts up to its last reading: Ray's raylet ignores SIGCHLD, so the trials' worker
processes it started leave nothing in its accounts when they end, and a reading at the end
alone would count their CPU as the machine's.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil

from searcher.bench.cpu import machine_cpu_s

# Mean cores busy outside the search over its run above which a search is flagged: a quarter of
# a core, an eighth of this 2-core machine.
BUSY_CORES = 0.25
POLL_S = 0.25  # a process that ends loses at most this much of its CPU from the search's count


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of `proc` and of the children it has reaped."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class _TreeClock:
    """The CPU a process tree spends from `start()` on, read every POLL_S: each process's
    latest reading less its reading at the start (nothing, for one started since)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._since = time.time()
        self._first: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="searcher-load", daemon=True)

    def _read(self) -> None:
        for proc in _tree(self.pid):
            with contextlib.suppress(psutil.Error):
                key = (proc.pid, proc.create_time())
                cpu = _cpu_s(proc)
                self._first.setdefault(key, cpu if key[1] < self._since else 0.0)
                self._last[key] = cpu

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self._read()

    def start(self) -> None:
        self._read()
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._read()
        return sum(self._last[key] - self._first[key] for key in self._last)


class Load:
    """The window's figures, filled in when the `measured()` block ends."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}

    @property
    def busy(self) -> bool:
        return bool(self.figures.get("busy"))


@contextlib.contextmanager
def measured() -> Iterator[Load]:
    """The load beside the block: `own_cpu_s` (CPU seconds of this process tree),
    `other_cpu_s` (the machine's outside it), `other_cores` (that per second of the block) and
    `busy` (over BUSY_CORES)."""
    load = Load()
    clock = _TreeClock(os.getpid())
    wall0, machine0 = time.monotonic(), machine_cpu_s()
    clock.start()
    try:
        yield load
    finally:
        own = clock.stop()
        wall = time.monotonic() - wall0
        other = max(0.0, (machine_cpu_s() - machine0) - own)
        cores = other / wall if wall > 0 else 0.0
        load.figures = {"wall_s": round(wall, 1), "own_cpu_s": round(own, 1),
                        "other_cpu_s": round(other, 1), "other_cores": round(cores, 3),
                        "busy": cores > BUSY_CORES}


def busy_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs (one search each, with `sampler`, `seed` and `load`) flagged busy."""
    return [{"sampler": r["sampler"], "seed": r["seed"], "other_cores": r["load"]["other_cores"]}
            for r in runs if r.get("load", {}).get("busy")]


def busy_line(busy: list[dict[str, Any]]) -> str:
    """The report's line for `busy_runs`: none, or which ran busy and how busy."""
    if not busy:
        return f"every search had the machine (under {BUSY_CORES:g} cores busy beside it)"
    which = ", ".join(f"{b['sampler']} seed {b['seed']} ({b['other_cores']:.2f})" for b in busy)
    return (f"BUSY: ran beside other work (mean cores busy outside the search): {which}; "
            f"their figures are partly the machine's, not the sampler's")
