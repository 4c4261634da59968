"""Anytime curves: the best result so far against time, their mean over seeds, and their plot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

Events = Sequence[tuple[float, float]]  # (seconds since the search started, value) per result
NEVER = 2.0  # what time_to_reach says when the curve never gets there within the budget


def best_so_far(events: Events, times: np.ndarray) -> np.ndarray:
    """The best value received by each of `times` (NaN before the first result)."""
    times = np.asarray(times, dtype=float)
    if not events:
        return np.full(len(times), np.nan)
    at, value = np.array(sorted(events), dtype=float).T
    best = np.maximum.accumulate(value)
    idx = np.searchsorted(at, times, side="right") - 1
    return np.where(idx >= 0, best[np.clip(idx, 0, None)], np.nan)


def curves(runs: Sequence[Events], times: np.ndarray) -> np.ndarray:
    """One best-so-far curve per run (rows). Their mean, min and max are NaN until every run
    has a result, so that a summary never compares some seeds against all of them."""
    return np.stack([best_so_far(events, times) for events in runs])


def time_to_reach(runs: Sequence[Events], target: float, budget: float) -> float:
    """The first time, as a fraction of `budget`, at which the runs' mean curve reaches
    `target`; NEVER if it does not (or the target is NaN). The mean curve only moves when a run
    gets a result, so evaluating it at those times is exact."""
    if target is None or not math.isfinite(target):  # None: a run with no result at all
        return NEVER
    times = np.array(sorted({t for events in runs for t, _ in events}), dtype=float)
    if not len(times):
        return NEVER
    reached = np.nonzero(curves(runs, times).mean(axis=0) >= target)[0]
    return round(float(times[reached[0]]) / budget, 4) if len(reached) else NEVER


def plot(path: Path, t: Sequence[float], bands: dict[str, dict[str, Sequence[float]]],
         reference: tuple[str, str, float] | None, xlabel: str, ylabel: str, title: str) -> None:
    """A mean line and a min-max band per label (`bands[label]` has "mean", "min", "max"), and
    `reference` = (the label whose colour it takes, its legend text, its value) dashed across."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)  # Agg: no display, no global pyplot state
    ax = fig.add_subplot()
    t = np.asarray(t, dtype=float)
    colours = {}
    for label, band in bands.items():
        c = {k: np.asarray(v, dtype=float) for k, v in band.items()}  # JSON nulls become NaN
        (line,) = ax.step(t, c["mean"], where="post", lw=2, label=label)
        ax.fill_between(t, c["min"], c["max"], step="post", alpha=0.2, color=line.get_color(),
                        lw=0)
        colours[label] = line.get_color()
    if reference and reference[2] is not None and math.isfinite(reference[2]):
        ax.axhline(reference[2], ls="--", lw=1, color=colours.get(reference[0]),
                   label=reference[1])
    ax.set_xlim(0, t[-1])
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
