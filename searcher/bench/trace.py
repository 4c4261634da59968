"""How a search's trials ended, rung by rung: what its early stopping did with the nets it got.

Two searches with the same budget can train the same number of nets and still spend them
differently: one scheduler stops most nets at the first rung, another lets them run. Per rung
(an epoch where the scheduler compares trials; epoch 0 is the first look, after part of the
first epoch), `rungs` counts the sampled trials that reached
it, those stopped there, and those that went on; `ended` counts every sampled trial's end.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

_STOPPED_AT = re.compile(r"stopped early: at epoch (\d+)$")
_AT_LOOK = "stopped early: at its first look"
_BUDGET_AT = re.compile(r"stopped early: by the time budget at epoch (\d+)$")


def rung_epochs(grace_period: int, reduction_factor: int, epochs: int,
                first_look: bool = False) -> list[int]:
    """The epochs where ASHA (and ParetoASHA) compare trials: grace_period x rf^k below epochs,
    after 0 (the first look) when the search takes one (a grace period below rf)."""
    rungs = [0] if first_look and grace_period < reduction_factor else []
    at = grace_period
    while at < epochs:
        rungs.append(at)
        at *= reduction_factor
    return rungs


def how_ended(outcome: str) -> str:
    """A trial's outcome as a trace key: `stopped@N`, `budget@N`, `completed`, `infeasible`
    (never trained: too slow, or not buildable), `failed`, or `open` (none yet)."""
    if m := _STOPPED_AT.match(outcome):
        return f"stopped@{m[1]}"
    if outcome == _AT_LOOK:
        return "stopped@0"
    if m := _BUDGET_AT.match(outcome):
        return f"budget@{m[1]}"
    for key in ("completed", "infeasible", "failed"):
        if outcome.startswith(key):
            return key
    return "open"


def trace(records: Sequence[Any], settings: dict[str, Any]) -> dict[str, Any]:
    """`ended` (how each sampled trial ended, counted) and `rungs` (per rung epoch: reached,
    stopped, went_on) of a search's records (the space's baselines left out)."""
    sampled = [r for r in records if r.baseline is None]
    ended = Counter(how_ended(r.outcome or "") for r in sampled)
    rungs = {}
    for epoch in rung_epochs(settings["grace_period"], settings["reduction_factor"],
                             settings["epochs"], settings.get("first_look", False)):
        reached = [r for r in sampled if r.logged and (r.epochs or 0) >= epoch]
        stopped = sum(1 for r in reached if how_ended(r.outcome or "") == f"stopped@{epoch}")
        cut = sum(1 for r in reached if how_ended(r.outcome or "") == f"budget@{epoch}")
        rungs[str(epoch)] = {"reached": len(reached), "stopped": stopped,
                             "went_on": len(reached) - stopped - cut}
    return {"ended": dict(sorted(ended.items())), "rungs": rungs}


def trace_line(t: dict[str, Any]) -> str:
    """One search's trace in a line: rung by rung reached > went on, then how trials ended."""
    rungs = ", ".join(f"epoch {e}: {r['reached']} > {r['went_on']}"
                      for e, r in t["rungs"].items())
    ended = ", ".join(f"{k} {n}" for k, n in t["ended"].items())
    return f"rungs {rungs or '-'}; ended {ended or '-'}"
