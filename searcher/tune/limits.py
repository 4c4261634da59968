"""The search's two limits, its trials and its wall-clock time, as this run's settings say.

Tune keeps its own `num_samples` and `time_budget_s` in the state it saved when the search began
and restores them on `--resume`, where no new ones can be given. So the search owns both: Tune
runs with no limit of its own, and
- the trial count: `StudySearcher` proposes nothing once it has proposed `num_samples` trials
  over the whole search (what it proposed is in its saved state, beside Tune's trials);
- the time: `TimeBudget`, Tune's stopper, ends the search once it has run `time_budget_s` in
  all, its earlier runs included.
Both read the limits given to `applying` by the driver of this run, at a start and at every
resume alike, so a resumed search takes the `--num-samples` and `--time-budget` given again.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

from ray import tune


@dataclass(frozen=True)
class Limits:
    num_samples: int  # trials Tune runs over the whole search; -1: as many as the time allows
    time_budget_s: float | None  # wall-clock seconds over the whole search, resumes included


_ACTIVE: Limits | None = None
_USED_S: float | None = None  # the time the running search has used of its budget, so far


@contextlib.contextmanager
def applying(limits: Limits) -> Iterator[Limits]:
    """Hold the search run in the block to `limits`."""
    global _ACTIVE, _USED_S
    _ACTIVE, _USED_S = limits, None
    try:
        yield limits
    finally:
        _ACTIVE = None


def trials() -> int:
    """The trials the running search may propose in all; -1 for no count (none applied)."""
    return _ACTIVE.num_samples if _ACTIVE is not None else -1


def time_used() -> float | None:
    """What the running search has used of its time, earlier runs included; None before Tune's
    first step."""
    return _USED_S


class TimeBudget(tune.Stopper):
    """Ends the search once the time it ran, in all its runs, reaches the applied budget.

    Tune pickles its stopper with every snapshot of the experiment and restores it on resume, so
    the time used travels with the search: up to Tune's last snapshot (at a Ctrl-C, the moment
    it stopped; for a killed driver, the snapshot before). The clock starts at Tune's first step
    of each run, as Tune's own TimeoutStopper's does, so setting up is not counted.
    """

    def __init__(self) -> None:
        self.used_s = 0.0
        self._last: float | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        global _USED_S
        now = time.monotonic()
        if self._last is not None:
            self.used_s += now - self._last
        self._last = now
        _USED_S = self.used_s
        budget = _ACTIVE.time_budget_s if _ACTIVE is not None else None
        return budget is not None and self.used_s >= budget

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_last": None}  # a monotonic clock means nothing elsewhere
