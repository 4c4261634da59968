"""The Pareto benchmark's figures: each search's front, hypervolume and best net under the bound,
the summary (the JSON keys other tools read), its table and the fronts' plot."""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from searcher.bench.load import busy_line, busy_runs
from searcher.bench.quality_report import BASELINE, DEFAULT_SAMPLER, METRIC, seed_numbers
from searcher.bench.trace import trace_line
from searcher.pareto import front, hypervolume, minimised

if TYPE_CHECKING:
    from searcher.tracking.readback import TrialRecord

SECOND = "latency_ms"  # the median latency at the search's latency_batch, timed in the trial
DIRECTIONS = ("max", "min")  # val_acc up, latency down
# A variant the benchmark can add (--variants): the default sampler in a one-objective search
# under the same bound (TPE on accuracy, plain ASHA), to tell what the Pareto search itself adds.
ONE_OBJECTIVE = "tpe-one-objective"
# A run's sampler (or variant) -> its name in the JSON
LABELS = {DEFAULT_SAMPLER: "default", BASELINE: "random", ONE_OBJECTIVE: "one_objective"}


def trained_points(records: Sequence[TrialRecord]) -> list[tuple[float, float]]:
    """(best val_acc, latency_ms) of every sampled net that trained at least one epoch. The
    space's baselines are left out even when they ran (--with-baselines): both samplers would
    share them, and the figures compare what each sampler found."""
    return [(rec.best, rec.speed[SECOND]) for rec in records
            if rec.baseline is None and rec.best is not None and SECOND in rec.speed]


def search_hypervolume(points: Sequence[tuple[float, float]],
                       reference: tuple[float, float]) -> float:
    """The area of (val_acc, latency_ms) that `points` dominate up to `reference`, in accuracy x
    ms: 0 when no net beats chance accuracy within the bound."""
    return hypervolume([minimised(p, DIRECTIONS) for p in points], minimised(reference, DIRECTIONS))


def front_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated ones of `points`, fastest first."""
    kept = front([minimised(p, DIRECTIONS) for p in points])
    return sorted((points[i] for i in kept), key=lambda p: (p[1], -p[0]))


def best_under_budget(records: Sequence[TrialRecord], bound_ms: float) -> float:
    """The best val_acc of a sampled net whose median latency is within `bound_ms`; NaN when
    none trained. A search never trains a net timed over its bound, but a record that somehow
    has one (a trial resumed from a checkpoint is not timed against the bound again) must not
    count."""
    return max((acc for acc, latency in trained_points(records) if latency <= bound_ms),
               default=math.nan)


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def _mean(values: list[float]) -> float:
    # NaN (a search with no trained net) carries through: no mean hides it
    return round(float(np.mean(values)), 4) if values else math.nan


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


def summarise(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """`pareto`: per sampler label (default, random), a list with one entry per seed."""
    ran = [s for s in LABELS if any(r["sampler"] == s for r in runs)]

    def per_seed(key: str) -> dict[str, list[Any]]:
        return {LABELS[s]: [r[key] for r in sorted((r for r in runs if r["sampler"] == s),
                                                  key=lambda r: r["seed"])]
                for s in ran}

    hv, best = per_seed("hypervolume"), per_seed("best_under_budget")
    mean_hv = {k: _mean(v) for k, v in hv.items()}
    mean_best = {k: _mean(v) for k, v in best.items()}
    fixed = {k: v for k, v in runs[0]["settings"].items()
             if k not in ("sampler", "seed", "experiment", "storage_path", "tracking_uri")}
    return {
        "seeds": seed_numbers(args), "budget_s": args.budget, "bound_ms": args.max_latency_ms,
        "metric": METRIC, "second_objective": SECOND,
        "samplers": {LABELS[sampler]: sampler for sampler in ran},
        "reference_point": list(runs[0]["reference_point"]),
        "hypervolume": hv, "mean_hypervolume": mean_hv,
        "hypervolume_ratio": _ratio(mean_hv.get("default", math.nan),
                                    mean_hv.get("random", math.nan)),
        "best_under_budget": best, "mean_best_under_budget": mean_best,
        "best_under_budget_difference": round(mean_best.get("default", math.nan)
                                              - mean_best.get("random", math.nan), 4),
        "trials": per_seed("trials"), "trained": per_seed("trained"),
        "too_slow": per_seed("too_slow"), "infeasible": per_seed("infeasible"),
        "runs": [{k: v for k, v in r.items() if k != "settings"} for r in runs],
        "busy": busy_runs(runs),
        "settings": {"space": args.space or "the smoke space (quality.SMOKE_SPACE)",
                     "data": args.data_dir or "generated (smoke)", "smoke": args.smoke,
                     "train_images": args.train_images, "val_images": args.val_images,
                     "with_baselines": args.with_baselines, **fixed}}


def _number(value: float | None) -> str:
    # NaN, or null read back from a JSON file: no result
    return f"{value:.4f}" if value is not None and math.isfinite(value) else "-"


def table(p: dict[str, Any]) -> str:
    seeds, bound = p["seeds"], p["bound_ms"]
    acc, ms = p["reference_point"]
    names = {label: f"{sampler} ({label})" if label != sampler else label
             for label, sampler in p["samplers"].items()}
    width = max(len(n) for n in names.values()) + 4
    head = f"{'':<{width}}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}"
    lines = [(f"{p['metric']} against {p['second_objective']} (bound {bound:g} ms), "
              f"{p['budget_s']:g} s per search, {len(seeds)} seed(s); sampled networks only"),
             f"hypervolume (accuracy x ms) from the reference point ({acc:g}, {ms:g} ms)", head]
    for label, name in names.items():
        lines.append(f"  {name:<{width - 2}}" + "".join(f"{_number(v):>9}"
                                                          for v in p["hypervolume"][label])
                     + f"{_number(p['mean_hypervolume'][label]):>9}")
    lines += ["", f"best {p['metric']} of a net within {bound:g} ms", head]
    for label, name in names.items():
        lines.append(f"  {name:<{width - 2}}" + "".join(f"{_number(v):>9}"
                                                          for v in p["best_under_budget"][label])
                     + f"{_number(p['mean_best_under_budget'][label]):>9}")
    lines += ["", "trials per seed: trained / timed over the bound / all proposals never trained"]
    for label, name in names.items():
        counts = zip(p["trained"][label], p["too_slow"][label], p["infeasible"][label])
        lines.append(f"  {name:<{width - 2}}" + "   ".join(f"{a}/{b}/{c}" for a, b, c in counts))
    lines += ["", "how each search's trials ended: per rung, reached > went on (trace.py)"]
    for label, name in names.items():
        for run in sorted((r for r in p["runs"] if r["sampler"] == p["samplers"][label]
                           and "rungs" in r), key=lambda r: r["seed"]):
            lines.append(f"  {name} seed {run['seed']}: {trace_line(run)}")
    lines += ["", (f"hypervolume_ratio {_number(p['hypervolume_ratio'])} (default / random, "
                   f"means over seeds); best under the bound: default "
                   f"{_number(p['mean_best_under_budget'].get('default'))}, random "
                   f"{_number(p['mean_best_under_budget'].get('random'))} "
                   f"(difference {_number(p['best_under_budget_difference'])})"),
              busy_line(p.get("busy", []))]
    return "\n".join(lines)


def plot(p: dict[str, Any], path: Path) -> None:
    """One panel per seed: every trained net of each sampler, its front as a staircase, the
    bound and chance accuracy (the reference point) as dashed lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    seeds = p["seeds"]
    fig = Figure(figsize=(4.2 * len(seeds), 4.0), dpi=110)
    FigureCanvasAgg(fig)  # Agg: no display, no global pyplot state
    acc, bound = p["reference_point"]
    for i, seed in enumerate(seeds):
        ax = fig.add_subplot(1, len(seeds), i + 1)
        for sampler in p["samplers"].values():
            run = next(r for r in p["runs"] if r["sampler"] == sampler and r["seed"] == seed)
            points = np.array(run["points"], dtype=float).reshape(-1, 2)
            (dots,) = ax.plot(points[:, 1], points[:, 0], ".", alpha=0.4)
            edge = np.array(run["front"], dtype=float).reshape(-1, 2)
            if len(edge):  # the region it dominates ends at the bound
                ax.step(np.append(edge[:, 1], bound), np.append(edge[:, 0], edge[-1, 0]),
                        where="post", color=dots.get_color(), lw=2,
                        label=f"{sampler}: hv {_number(run['hypervolume'])}")
        ax.axvline(bound, ls="--", lw=1, color="grey")
        ax.axhline(acc, ls=":", lw=1, color="grey")
        ax.set(xlabel=f"median latency, ms (bound {bound:g})", title=f"seed {seed}",
               xlim=(0, bound * 1.05))
        ax.set_ylim(bottom=acc - 0.02)
        if i == 0:
            ax.set_ylabel(f"best {p['metric']}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a search that trained nothing has no front
            ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("Pareto fronts: default sampler vs random at the same budget", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
