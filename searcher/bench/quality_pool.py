"""Runs of the quality benchmark pooled into one: more seeds of the same design than one run fits.

One run is 3 seeds x 2 samplers x 6 minutes (about 40 minutes on 2 cores); its figures move with
the order in which trials finish, which the machine's timing decides (BENCHMARKS.md). A second
run with other seeds (`--first-seed 3`) is a second sample of the same design; pooled, the two
give the figures over 6 seeds: `python -m searcher.bench quality --pool A.json B.json --json P`.

Pooling works on the curves' common time grid (every 3 s of a 6-minute budget), since runs saved
before per-seed events were kept hold only their mean curves: the pooled mean curve is the
seed-weighted mean of the runs' mean curves (exact on the grid), min and max the elementwise
extremes, and time_to_random_best_fraction the first grid time at which the default's pooled mean
reaches random's pooled final mean (so to within one grid step, 1/120 of the budget). Runs pool
only if they measured the same thing: the same budget, grid, samplers and settings, and no seed
twice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from searcher.bench.anytime import NEVER
from searcher.bench.load import busy_runs
from searcher.errors import UserError

# Settings that may differ between pooled runs: where the data was read from, not what it was.
MAY_DIFFER = {"data"}


class PoolError(UserError):
    """The runs did not measure the same thing."""


def pool(results: list[dict[str, Any]], names: list[str], default: str = "default",
         baseline: str = "random") -> dict[str, Any]:
    """One benchmark result (machine info of the first run, `pooled_from` naming all of them)
    whose `quality` holds the figures over every seed of `results`."""
    qs = [r["quality"] for r in results]
    first = qs[0]
    warm = [name for name, q in zip(names, qs) if "warm_start" in q]
    if warm:  # its figures are a second search's, not a cold search's like the rest
        raise PoolError(f"{warm[0]}: a warm-started run (--warm-start); pool cold runs only")
    for name, q in zip(names[1:], qs[1:]):
        for key in ("budget_s", "samplers", "metric"):
            if q[key] != first[key]:
                raise PoolError(f"{name}: {key} {q[key]!r} differs from {names[0]}'s "
                                f"{first[key]!r}")
        if q["curves"]["t_s"] != first["curves"]["t_s"]:
            raise PoolError(f"{name}: its curves' time grid differs from {names[0]}'s")
        differ = sorted(k for k in set(q["settings"]) | set(first["settings"])
                        if k not in MAY_DIFFER and q["settings"].get(k) != first["settings"].get(k))
        if differ:
            raise PoolError(f"{name}: settings differ from {names[0]}'s: {', '.join(differ)}")
    per_run = [list(q.get("seed_numbers") or range(q["seeds"])) for q in qs]  # older runs: 0..n-1
    numbers = [n for run in per_run for n in run]
    if len(set(numbers)) < len(numbers):
        raise PoolError(f"a seed appears in more than one run ({numbers}); run the second with "
                        f"--first-seed")
    weights = np.array([q["seeds"] for q in qs], dtype=float)
    pooled: dict[str, Any] = {"seeds": int(weights.sum()), "seed_numbers": numbers,
                              "budget_s": first["budget_s"], "samplers": first["samplers"],
                              "metric": first["metric"], "curves": {"t_s": first["curves"]["t_s"]}}
    labels = [k for k in first["curves"] if k != "t_s"]
    for label in labels:
        finals = [v for q in qs for v in q[label]["final_best"]]
        values = np.array([np.nan if v is None else v for v in finals], dtype=float)
        pooled[label] = {
            "sampler": first[label]["sampler"], "final_best": finals,
            "final_best_mean": round(float(values.mean()), 4),
            "final_best_std": round(float(values.std(ddof=1)), 4) if len(values) > 1 else 0.0,
            "trials": [n for q in qs for n in q[label]["trials"]],
            "infeasible": [n for q in qs for n in q[label]["infeasible"]],
            "trained": [n for q in qs for n in q[label].get("trained", [])],
            # null (NaN: some seed had no result yet) carries through, as in one run
            "best_so_far_at": {f: round(float(np.average(
                _array([q[label]["best_so_far_at"][f] for q in qs]), weights=weights)), 4)
                for f in first[label]["best_so_far_at"]}}
        curves = [{k: _array(q["curves"][label][k]) for k in ("mean", "min", "max")} for q in qs]
        pooled["curves"][label] = {
            "mean": _listed(np.average([c["mean"] for c in curves], axis=0, weights=weights)),
            "min": _listed(np.minimum.reduce([c["min"] for c in curves])),
            "max": _listed(np.maximum.reduce([c["max"] for c in curves]))}
    grid = np.array(first["curves"]["t_s"], dtype=float)
    mean = _array(pooled["curves"][default]["mean"])
    target = pooled[baseline]["final_best_mean"]
    reached = np.nonzero(mean >= target)[0]  # NaN compares False: before every seed has a result
    pooled["time_to_random_best_fraction"] = (round(float(grid[reached[0]] / first["budget_s"]), 4)
                                              if len(reached) else NEVER)
    pooled["runs"] = [run for q in qs for run in q["runs"]]
    pooled["busy"] = busy_runs(pooled["runs"])
    pooled["settings"] = first["settings"]
    info = {k: v for k, v in results[0].items() if k != "quality"}
    return {**info, "pooled_from": [
        {"file": name, "date": r.get("date"), "seeds": seeds,
         **{k: r.get(k) for k in ("torch", "ray", "optuna", "mlflow")}}
        for name, r, seeds in zip(names, results, per_run)], "quality": pooled}


def read(path: str) -> dict[str, Any]:
    """One quality benchmark result, as its --json wrote it."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PoolError(f"{path}: not a quality benchmark's JSON ({exc})") from None
    if not isinstance(result, dict) or "quality" not in result:
        raise PoolError(f"{path}: no 'quality' figures in it")
    return result


def load(paths: list[str]) -> dict[str, Any]:
    return pool([read(path) for path in paths], list(paths))


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]
