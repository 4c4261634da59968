"""The quality benchmark's figures from its runs: the summary (the JSON keys other tools read), its table and its plot."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from searcher.bench import anytime
from searcher.bench.anytime import NEVER
from searcher.bench.load import busy_line, busy_runs
from searcher.spec.settings import Settings

DEFAULT_SAMPLER = Settings().sampler  # what a user gets without choosing: the one to vindicate
BASELINE = "random"  # what any search method has to beat
METRIC = "val_acc"  # the claim is about accuracy, so the samplers optimise it too
GRID_POINTS = 121  # the curves' common time grid: every 3 s of a 6-minute budget
FRACTIONS = (0.25, 0.5, 0.75, 1.0)



def seed_numbers(args: argparse.Namespace) -> list[int]:
    return list(range(args.first_seed, args.first_seed + args.seeds))


def _label(sampler: str) -> str:
    return "default" if sampler == DEFAULT_SAMPLER else sampler


def _rounded(values: np.ndarray | list[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def summarise(runs: list[dict[str, Any]], args: argparse.Namespace,
              baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures of `runs`; with `baseline` (an earlier run's `quality`, `--baseline-from`),
    random's figures are that run's."""
    budget = args.budget
    grid = np.linspace(0.0, budget, GRID_POINTS)
    q: dict[str, Any] = {"seeds": args.seeds, "seed_numbers": seed_numbers(args),
                         "budget_s": budget,
                         "samplers": args.samplers + ([BASELINE] if baseline else []),
                         "metric": METRIC, "curves": {"t_s": _rounded(grid)}}
    if baseline:
        q[BASELINE] = baseline[BASELINE]
        q["curves"][BASELINE] = baseline["curves"][BASELINE]
        q["baseline_from"] = args.baseline_from
    for sampler in args.samplers:
        mine = sorted((r for r in runs if r["sampler"] == sampler), key=lambda r: r["seed"])
        finals = [float(r["final_best"]) for r in mine]
        events = [r["events"] for r in mine]
        curves = anytime.curves(events, grid)
        q[_label(sampler)] = {
            "sampler": sampler, "final_best": _rounded(finals),
            # NaN (a search with no result at all) carries through: no mean hides it
            "final_best_mean": round(float(np.mean(finals)), 4),
            "final_best_std": round(float(np.std(finals, ddof=1)), 4) if len(finals) > 1 else 0.0,
            "trials": [r["trials"] for r in mine], "infeasible": [r["infeasible"] for r in mine],
            "trained": [r["trained"] for r in mine],
            "best_so_far_at": {str(f): round(float(anytime.curves(events, [f * budget]).mean()), 4)
                               for f in FRACTIONS}}
        q["curves"][_label(sampler)] = {"mean": _rounded(curves.mean(0)),
                                        "min": _rounded(curves.min(0)),
                                        "max": _rounded(curves.max(0)),
                                        # per seed: which seed moved the mean, and when
                                        "per_seed": [_rounded(c) for c in curves]}
    target = q[BASELINE]["final_best_mean"]
    q["time_to_random_best_fraction"] = anytime.time_to_reach(
        [r["events"] for r in runs if r["sampler"] == DEFAULT_SAMPLER], target, budget)
    if args.warm_start:  # what the default sampler's searches learnt from, per seed
        warm = [r["warm_start"] for r in runs if r["sampler"] == DEFAULT_SAMPLER]
        q["warm_start"] = {"kept": args.warm_start, **{k: [w[k] for w in warm]
                                                       for k in ("from_seed", "trials", "best")}}
    earlier = [run for run in baseline["runs"] if run["sampler"] == BASELINE] if baseline else []
    q["runs"] = earlier + [{k: v for k, v in r.items() if k not in ("events", "settings")}
                           for r in runs]
    q["busy"] = busy_runs(q["runs"])
    fixed = {k: v for k, v in runs[0]["settings"].items()
             if k not in ("sampler", "seed", "experiment", "storage_path", "tracking_uri")}
    q["settings"] = {"space": args.space or "the smoke space (SMOKE_SPACE)",
                     "data": args.data_dir or "generated (smoke)",
                     "smoke": args.smoke, "train_images": args.train_images,
                     "val_images": args.val_images, **fixed,
                     **({"with_baselines": True} if args.with_baselines else {})}
    return q


def _number(value: float | None) -> str:
    # NaN, or null read back from a JSON file: no result (yet)
    return f"{value:.4f}" if value is not None and math.isfinite(value) else "-"


def table(q: dict[str, Any]) -> str:
    seeds, budget = q["seeds"], q["budget_s"]
    numbers = q.get("seed_numbers") or list(range(seeds))
    names = [_label(s) for s in q["samplers"]]
    width = max(len(f"{q[n]['sampler']} ({n})") for n in names) + 2

    def name(n: str) -> str:
        return f"{q[n]['sampler']} ({n})" if n != q[n]["sampler"] else n

    shipped = q["settings"].get("with_baselines")
    lines = [f"best {q['metric']} within {budget:g} s per search, {seeds} seed(s)"
             + (" (sampled networks; the space's baselines ran first)" if shipped else ""),
             f"{'sampler':<{width}}" + "".join(f"{'seed ' + str(i):>8}" for i in numbers)
             + f"{'mean':>8}{'std':>8}  trials per seed  nets trained  infeasible"]
    for n in names:
        b = q[n]
        trained = "/".join(map(str, b.get("trained", []))) or "-"  # older runs: not recorded
        lines.append(f"{name(n):<{width}}" + "".join(f"{_number(v):>8}" for v in b["final_best"])
                     + f"{_number(b['final_best_mean']):>8}{_number(b['final_best_std']):>8}  "
                     f"{'/'.join(map(str, b['trials'])):<15}  {trained:<12}  "
                     f"{'/'.join(map(str, b['infeasible']))}")
    lines.append("")
    lines.append(f"{'mean best so far at':<{width}}"
                 + "".join(f"{f'{f:g} ({f * budget:.0f} s)':>14}" for f in FRACTIONS))
    for n in names:
        lines.append(f"{name(n):<{width}}"
                     + "".join(f"{_number(q[n]['best_so_far_at'][str(f)]):>14}" for f in FRACTIONS))
    if "warm_start" in q:
        w = q["warm_start"]
        lines += ["", f"{_label(DEFAULT_SAMPLER)} warm-started from the kept searches of seeds "
                      f"{'/'.join(map(str, w['from_seed']))} ({w['kept']}): "
                      f"{'/'.join(map(str, w['trials']))} trials, their best "
                      f"{'/'.join(_number(b) for b in w['best'])}"]
    fraction = q["time_to_random_best_fraction"]
    when = "not within the budget" if fraction >= NEVER else f"at {fraction:.0%} of the budget"
    lines += ["", f"time_to_random_best_fraction {fraction:.3f}: the default's mean curve reaches "
                  f"random's final mean best ({_number(q[BASELINE]['final_best_mean'])}) {when}",
              busy_line(q.get("busy", []))]
    return "\n".join(lines)


def plot(q: dict[str, Any], path: Path) -> None:
    """Mean curve and min-max band per sampler; random's final mean best as a dashed line."""
    warm = ", warm-started" if "warm_start" in q else ""
    bands = {f"{s}{f' (default{warm})' if s == DEFAULT_SAMPLER else ''}: mean of {q['seeds']} "
             f"seeds": q["curves"][_label(s)] for s in q["samplers"]}
    target = q[BASELINE]["final_best_mean"]
    anytime.plot(path, q["curves"]["t_s"], bands,
                 (next(k for k in bands if k.startswith(BASELINE)),
                  f"random's final mean best ({_number(target)})", target),
                 xlabel=f"seconds since the search started (budget {q['budget_s']:g} s)",
                 ylabel=f"best {q['metric']} so far",
                 title="Anytime best network: default sampler vs random "
                       "(band: min-max over seeds)")
