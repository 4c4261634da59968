"""How busy the machine was while a search ran: the CPU it spent outside the search.

A search's figures are its sampler's only if the search had the machine: on a shared 2-core
machine another job's minutes become fewer nets trained, and every figure moves with them. Each
benchmark search records `load` beside its figures, and the reports flag a search that ran busy.

The search's processes are this one and its descendants: the local Ray it started, the trials,
a server it started. A process that ended counts too, through the one that reaped it (Linux adds
a reaped child's CPU time to its parent's), as long as that one is still alive at the end.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import psutil

# Mean cores busy outside the search over its run above which a search is flagged: a quarter of
# a core, an eighth of this 2-core machine.
BUSY_CORES = 0.25


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants, and of the children each has reaped."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _machine_cpu_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


class Load:
    """The window's figures, filled in when the `measured()` block ends."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}

    @property
    def busy(self) -> bool:
        return bool(self.figures.get("busy"))


@contextlib.contextmanager
def measured() -> Iterator[Load]:
    """The load beside the block: `other_cpu_s` (CPU seconds the machine spent outside this
    process tree), `other_cores` (that per second of the block) and `busy` (over BUSY_CORES)."""
    load = Load()
    pid = os.getpid()
    wall0, machine0, own0 = time.monotonic(), _machine_cpu_s(), _tree_cpu_s(pid)
    try:
        yield load
    finally:
        wall = time.monotonic() - wall0
        other = max(0.0, (_machine_cpu_s() - machine0) - (_tree_cpu_s(pid) - own0))
        cores = other / wall if wall > 0 else 0.0
        load.figures = {"wall_s": round(wall, 1), "other_cpu_s": round(other, 1),
                        "other_cores": round(cores, 3), "busy": cores > BUSY_CORES}


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
