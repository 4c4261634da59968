"""The search's Pareto front, shown: its metric against the second objective (else latency) as
pareto.json, a table and a plot on the parent run, scored by the hypervolume it dominates.

The front and its hypervolume are computed in minimised space (searcher.pareto), the metric
negated when it is maximised, against the reference point the settings fix
(searcher.spec.objectives), so two searches with the same settings score on the same scale.
"""
from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from searcher import pareto
from searcher.spec.objectives import directions, front_objectives, reference_point
from searcher.spec.settings import Settings
from searcher.tracking.readback import TrialRecord
from searcher.tracking.tags import SPEED_METRICS

UNITS = {"latency_ms": "ms", "n_params": "params", "mmacs": "MMACs"}
# The plot's panels: the metric against each of these, each with its own front.
PANELS = (("latency_ms", "linear"), ("n_params", "log"))


def front_summary(records: list[TrialRecord], settings: Settings,
                  num_classes: int) -> dict[str, Any]:
    """What pareto.json holds: the objectives, the reference point, the hypervolume, every trial
    with a metric value and the second objective as a point, and the front's trials by the second
    objective, smallest first."""
    metric, second = front_objectives(settings)
    sense = directions(settings)
    points = [p for p in (_point(r, metric) for r in records)
              if p[metric] is not None and p[second] is not None]
    minimised = [pareto.minimised((p[metric], p[second]), sense) for p in points]
    for p, rank in zip(points, pareto.ranks(minimised)):
        p["front_rank"], p["on_front"] = rank, rank == 0
    reference = reference_point(settings, num_classes)
    members = sorted((p for p in points if p["on_front"]),
                     key=lambda p: (p[second], pareto.minimised((p[metric],), sense[:1])))
    return {"objectives": [metric, second], "directions": list(sense),
            "reference": list(reference),
            "hypervolume": pareto.hypervolume(minimised, pareto.minimised(reference, sense)),
            "front": [p["trial"] for p in members],
            "bounds": {"max_latency_ms": settings.max_latency_ms,
                       "latency_batch": settings.latency_batch,
                       "max_params": settings.max_params, "max_mmacs": settings.max_mmacs},
            "points": points}


def _point(r: TrialRecord, metric: str) -> dict[str, Any]:
    return {"trial": r.trial_id, "run_id": r.run_id, "baseline": r.baseline, metric: r.best,
            **{key: r.speed.get(key) for key in SPEED_METRICS},
            "n_params": r.n_params, "mmacs": r.mmacs}


def front_line(summary: dict[str, Any]) -> str:
    """The closing line, e.g. `Pareto front (val_acc vs latency_ms): 4 of 12 trials, hypervolume
    0.123 (reference 0.1, 100 ms)`."""
    metric, second = summary["objectives"]
    worst, bound = summary["reference"]
    head = f"Pareto front ({metric} vs {second})"
    if not summary["points"]:
        return f"{head}: no trial has both"
    return (f"{head}: {len(summary['front'])} of {len(summary['points'])} trials, hypervolume "
            f"{summary['hypervolume']:.4g} (reference {worst:.4g}, {bound:,.6g} {UNITS[second]})")


def format_front(summary: dict[str, Any]) -> str:
    """pareto.txt: the front's trials by the second objective, under the line that scores it."""
    metric = summary["objectives"][0]
    columns = ((metric, metric, ".4f", 8), ("latency_ms", "lat_ms", ".3f", 8),
               ("latency_p95_ms", "p95_ms", ".3f", 8), ("throughput_ips", "img/s", ",.0f", 9),
               ("n_params", "params", ",", 11), ("mmacs", "MMACs", ".2f", 8))
    header = f"{'trial':<14}" + "".join(f" {title:>{width}}" for _, title, _, width in columns)
    lines = [front_line(summary), "", header, "-" * len(header)]
    by_trial = {p["trial"]: p for p in summary["points"]}
    for p in (by_trial[t] for t in summary["front"]):
        cells = "".join(f" {'-' if p[key] is None else format(p[key], spec):>{width}}"
                        for key, _, spec, width in columns)
        lines.append(f"{p['trial'] + ('*' if p['baseline'] else ''):<14}{cells}"
                     + (f"  [{p['baseline']}]" if p["baseline"] else ""))
    return "\n".join(lines)


def log_front(client: MlflowClient, run_id: str, summary: dict[str, Any]) -> None:
    """pareto.json, pareto.txt, the hypervolume and front_size metrics, and plots/pareto.png."""
    client.log_dict(run_id, summary, "pareto.json")
    client.log_text(run_id, format_front(summary) + "\n", "pareto.txt")
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric("hypervolume", summary["hypervolume"], now, 0),
                                      Metric("front_size", len(summary["front"]), now, 0)])
    try:
        figure = draw_front(summary)
    except Exception as exc:  # noqa: BLE001 - a failed drawing leaves the table and json standing
        client.log_text(run_id, f"pareto: not drawn ({type(exc).__name__}: {exc})\n",
                        "plots/pareto.txt")
        return
    import matplotlib.pyplot as plt
    try:
        client.log_figure(run_id, figure, "plots/pareto.png")
    finally:
        plt.close(figure)


def draw_front(summary: dict[str, Any]):
    """Two panels, the metric against latency and against parameters (log): every trial grey,
    each panel's own front highlighted and joined as a step, the latency bound when set."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, sense = summary["objectives"][0], summary["directions"][0]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(12, 5))
    for ax, (key, scale) in zip(axes, PANELS):
        shown = [p for p in summary["points"] if p.get(key) is not None]
        xs, ys = [p[key] for p in shown], [p[metric] for p in shown]
        ax.scatter(xs, ys, color="0.7", s=18, label="trials")
        on = pareto.front([pareto.minimised((y, x), (sense, "min")) for x, y in zip(xs, ys)])
        best = sorted((xs[i], ys[i]) for i in on)
        if best:
            # "post": each front member holds its metric until the next, faster-won one.
            ax.step(*zip(*best), where="post", color="tab:red", linewidth=1)
            ax.scatter(*zip(*best), color="tab:red", s=30, zorder=3, label=f"front ({len(best)})")
        bound = summary["bounds"]["max_latency_ms"]
        if key == "latency_ms" and bound is not None:
            ax.axvline(bound, color="tab:blue", linestyle="--", linewidth=1,
                       label=f"max_latency_ms {bound:g}")
        ax.set_xscale(scale)
        ax.set_xlabel(f"{key} (batch {summary['bounds']['latency_batch']}, median)"
                      if key == "latency_ms" else key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    figure.suptitle(front_line(summary), fontsize="medium")
    figure.tight_layout()
    return figure
