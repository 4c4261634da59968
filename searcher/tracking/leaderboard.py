"""The end-of-search leaderboard: best trials first, with the choices that matter."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from searcher.objective import sign
from searcher.tracking.readback import TrialRecord


def _architecture(params: dict[str, Any]) -> str:
    """A compact reading of the network, e.g. `32x2k3+bn+res-relu-max | 64x1k3-relu-avg | gap`."""
    stages = params.get("stages", 0)
    parts = []
    for i in range(1, stages + 1):
        get = lambda key, default=None: params.get(f"stage{i}.{key}", params.get(key, default))  # noqa: E731
        bn = "+bn" if get("batch_norm", False) else ""
        res = "+res" if get("residual", False) else ""
        parts.append(f"{get('filters', '?')}x{get('convs', 1)}k{get('kernel', 3)}"
                     f"{bn}{res}-{get('activation', 'relu')}-{get('pool', 'max')}")
    head = params.get("head", "flatten")
    dense = params.get("dense_layers", 0)
    if dense:
        head += f"+{dense}x{params.get('dense_units', '?')}"
    return " | ".join(parts + [head])


def trial_name(params: dict[str, Any], baseline: str | None = None) -> str:
    """A trial's run name, short enough for MLflow's run list: `32x2-64x2-128 bn res gap sgd`
    (filters x convs per stage, then batch norm, residual, head, optimizer), after the baseline's
    name when the trial is one."""
    stages = range(1, params.get("stages", 0) + 1)
    get = lambda i, key, default=None: params.get(f"stage{i}.{key}", params.get(key, default))  # noqa: E731
    widths = "-".join(f"{get(i, 'filters', '?')}"
                      + (f"x{get(i, 'convs')}" if get(i, "convs", 1) > 1 else "") for i in stages)
    head = "gap" if params.get("head") == "gap" else "fc"
    if head == "fc" and params.get("dense_layers"):
        head += str(params.get("dense_units", params.get("dense1.units", "?")))
    flags = [flag for flag, on in (("bn", any(get(i, "batch_norm", False) for i in stages)),
                                   ("res", any(get(i, "residual", False) for i in stages))) if on]
    name = " ".join([widths or "?", *flags, head, params.get("optimizer", "sgd")])
    return f"{baseline}: {name}" if baseline else name


def _training(params: dict[str, Any]) -> str:
    lr = params.get("lr")
    return (f"{params.get('optimizer', 'sgd')} lr={lr:.2g} bs={params.get('batch_size', 128)}"
            if isinstance(lr, float) else f"{params.get('optimizer', 'sgd')}")


def build_leaderboard(records: list[TrialRecord], metric: str, mode: str,
                      front: Collection[str] = ()) -> list[dict[str, Any]]:
    """One row per trial, best first; trials without a score (failed) last. `front`: the trial
    ids on the search's Pareto front (searcher.tracking.pareto), marked in the `front` column."""
    ordered = sorted(records, key=lambda r: (r.best is None, sign(mode) * (r.best or 0.0)))
    return [{"rank": i + 1, "trial": r.trial_id, "baseline": r.baseline, metric: r.best,
             "epochs": r.epochs, "n_params": r.n_params, "mmacs": r.mmacs, "outcome": r.outcome,
             "architecture": _architecture(r.params), "training": _training(r.params),
             "run_id": r.run_id, "front": r.trial_id in front,
             "latency_ms": r.speed.get("latency_ms")} for i, r in enumerate(ordered)]


FRONT_MARK = "^"  # beside a trial on the Pareto front; the closing lines' legend names it


def format_leaderboard(rows: list[dict[str, Any]], metric: str, top: int = 10) -> str:
    header = (f"{'#':>2}    {'trial':<12} {metric:>8} {'epochs':>6} {'params':>9} {'lat_ms':>7}  "
              f"{'outcome':<24} choices")
    lines = [header, "-" * len(header)]
    shown = rows[:top] + [r for r in rows[top:] if r["baseline"]]  # baselines always shown
    for r in shown:
        value = f"{r[metric]:.4f}" if r[metric] is not None else "-"
        params = f"{r['n_params']:,}" if r["n_params"] else "-"
        latency = f"{r['latency_ms']:.2f}" if r.get("latency_ms") is not None else "-"
        mark = FRONT_MARK if r.get("front") else " "
        name = r["trial"] + ("*" if r["baseline"] else "")
        outcome = r["outcome"] if len(r["outcome"]) <= 24 else r["outcome"][:21] + "..."
        lines.append(f"{r['rank']:>2}  {mark} {name:<12} {value:>8} {r['epochs']:>6} {params:>9} "
                     f"{latency:>7}  {outcome:<24} {r['architecture']}; {r['training']}"
                     + (f"  [{r['baseline']}]" if r["baseline"] else ""))
    if len(rows) > len(shown):
        lines.append(f"... and {len(rows) - len(shown)} more trials (leaderboard.json in MLflow)")
    return "\n".join(lines)
