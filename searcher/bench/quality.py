"""`python -m searcher.bench quality`: the default sampler finds better networks than random.

Claim: at the same wall-clock budget, on the same space and the same data, the default sampler
(Optuna's TPE, setting `sampler="tpe"`) ends with a better best validation accuracy than random
sampling (`sampler="random"`), and reaches random's final best before the budget is spent.

How it is measured: for each seed, one search per sampler, in turns (tpe, random, tpe, random,
...) so that a busy machine slows both alike. Every search is the real machinery: the real space
file with its hand-made baselines dropped (only sampled networks compete; --with-baselines keeps
them), Ray Tune with ASHA on
the local Ray, MLflow logging into a throwaway sqlite store, and a fixed slice of CIFAR-10 (the
first --train-images and --val-images of the seeded split, the same for every search). Each search
runs until its --budget seconds are spent (num_samples=-1).

A search's anytime curve is the best validation accuracy so far, over every epoch result of every
trial, against seconds since Tune started. Tune stops at the budget but delivers the epochs already
in flight; those count at the budget, for both samplers alike. Figures, per sampler:
- final_best       the curve at the budget, per seed (null: the search got no result at all)
- best so far      the mean curve over seeds at 1/4, 1/2, 3/4 and the end of the budget
- time_to_random_best_fraction  the first time, as a fraction of the budget, at which the default
                   sampler's mean curve reaches random's final mean best: below 1.0 supports
                   "sooner"; 2.0 means never within the budget (or random found nothing)
Default: 3 seeds x 2 samplers x 6 minutes, about 40 minutes on a 2-core CPU. --smoke: generated
data, a tiny space, 2 seeds x 10 s, for CI. Output: a table, --json FILE and a PNG of the curves.

--with-baselines: the space as shipped, baselines and all. They run first in every search, taking
the same share of the budget for both samplers; TPE learns from them (and then changes the best
network found one or two choices at a time, as in the product: `samplers.make_sampler`), random
sampling does not. The figures still count sampled networks only.

--warm-start KEPT: the default sampler's search of each seed first learns the finished trials of
a search kept by an earlier run (--keep), of another seed: what a second search of a space gets
from the product's --warm-start. Random sampling ignores history, so its searches stay cold; the
figures then say how much sooner a second search gets there than a cold random one.

A change to the default sampler can be measured in half the time with --baseline-from EARLIER.json:
only the default sampler runs, and random's figures are taken from an earlier run (or pool) of the
same task and seeds. Random sampling draws the same configurations for the same seed, and its
searches have repeated to the last digit (BENCHMARKS.md); what is lost is the turn-taking, so a
machine busier than during the earlier run slows only the default sampler.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from searcher.bench import anytime
from searcher.bench.anytime import NEVER
from searcher.errors import UserError, one_line_errors
from searcher.spec.settings import SAMPLERS, Settings
from searcher.training.data import (
    CIFAR_FOLDER,
    CIFAR_TEST,
    DataError,
    SearchData,
    Split,
    load_search_data,
)

if TYPE_CHECKING:
    from searcher.spec.space import Space
    from searcher.tune.warm_start import WarmStart

PROG = "python -m searcher.bench quality"

# ----------------------------------------------------------------------------- setup

DEFAULT_SAMPLER = Settings().sampler  # what a user gets without choosing: the one to vindicate
BASELINE = "random"  # what any search method has to beat
METRIC = "val_acc"  # the claim is about accuracy, so the samplers optimise it too
GRID_POINTS = 121  # the curves' common time grid: every 3 s of a 6-minute budget
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
VERSIONS = ("ray", "optuna", "mlflow", "numpy")

# Options that differ between the real measurement and the smoke run (an option given wins).
FULL = {"seeds": 3, "budget": 360.0, "epochs": 4, "train_images": 10_000, "val_images": 2_000,
        "space": "spaces/cifar10.py"}
SMOKE = {"seeds": 2, "budget": 10.0, "epochs": 2, "train_images": 500, "val_images": 60}
SMOKE_IMAGES_PER_BATCH = 120  # x5 training batches: 540 training, 60 validation images

# Small enough to train in a fraction of a second, with a limit that makes some proposals
# infeasible, so that the smoke run exercises every figure.
SMOKE_SPACE = '''
SETTINGS = {"cpus_per_trial": 1, "max_mmacs": 3}


def space(trial):
    stages = trial.suggest_int("stages", 1, 2)
    for i in range(1, stages + 1):
        trial.suggest_int(f"stage{i}.filters", 4, 48, log=True)
    trial.suggest_categorical("pool", ["max", "none"])
    trial.suggest_categorical("head", ["flatten", "gap"])
    trial.suggest_float("lr", 0.003, 0.3, log=True)
    return {"padding": "same", "batch_norm": True, "batch_size": 64}


BASELINES = {"hand_made": {"stages": 1, "stage1.filters": 8, "pool": "max", "head": "flatten",
                           "lr": 0.05}}
'''


# ----------------------------------------------------------------------------- data

def reduced_task(data_dir: Path, train_images: int, val_images: int) -> SearchData:
    """The same slice of the seeded split for every search; copies, so the rest can be freed."""
    # A benchmark reads the data it is told to, never a download it was not asked for.
    if not any((folder / CIFAR_TEST).is_file() for folder in (data_dir / CIFAR_FOLDER, data_dir)):
        raise DataError(f"CIFAR-10 not found in {data_dir}; pass --data-dir with the folder that "
                        f"holds {CIFAR_FOLDER}/")
    full = load_search_data("cifar10", data_dir, 32, 0.1, 0)
    return SearchData(Split(full.train.x[:train_images].copy(), full.train.y[:train_images].copy()),
                      Split(full.val.x[:val_images].copy(), full.val.y[:val_images].copy()),
                      full.classes, full.mean, full.std)


# ----------------------------------------------------------------------------- one search

def overrides(sampler: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The settings one search runs with: all but sampler and seed are the same for every run."""
    return {"sampler": sampler, "seed": seed, "metric": METRIC, "time_budget_s": args.budget,
            "num_samples": -1, "epochs": args.epochs, "grace_period": args.grace_period,
            "reduction_factor": args.reduction_factor, "storage_path": str(folder / "ray"),
            "experiment": f"quality-{sampler}-{seed}"}


def one_search(space_file: Path, sampler: str, seed: int, args: argparse.Namespace,
               data: SearchData, folder: Path) -> dict[str, Any]:
    """One real search; returns its counts and its (seconds since start, val_acc) results."""
    from searcher.spec.space import load_space
    from searcher.tracking import store as tracking
    from searcher.tune.tuner import run_search

    folder.mkdir(parents=True)
    space = load_space(space_file, overrides(sampler, seed, args, folder))
    if not args.with_baselines:
        space = dataclasses.replace(space, baselines={})
    warm = learnt_from(space, sampler, seed, args, data)
    client = tracking.connect(f"sqlite:///{folder / 'mlflow.db'}")
    parent = tracking.start_search_run(client, space, {
        "dataset": "cifar10", "train": len(data.train), "val": len(data.val),
        "classes": data.classes, "image_shape": data.image_shape},
        warm.found.summary() if warm else None)
    result = run_search(space, data, client.tracking_uri, parent, None,
                        warm.found if warm else None)
    client.set_terminated(parent, "FINISHED")
    events = [(min(h["at"] - result.started_at, args.budget), h[METRIC])
              for rec in result.records if rec.baseline is None
              for h in rec.history if METRIC in h]
    return {"sampler": sampler, "seed": seed,
            "final_best": max((v for _, v in events), default=math.nan),
            "trials": len(result.records), "epoch_results": len(events),
            "infeasible": sum(1 for t in result.study.trials if "infeasible" in t.user_attrs),
            "proposals": len(result.study.trials), "errors": result.errors,
            "wall_s": round(result.wall_time_s, 1), "events": events,
            "settings": space.settings.to_dict(),
            **({"warm_start": {"from_seed": warm.seed, "trials": len(warm.found.trials),
                               "best": warm.best, "skipped": warm.found.skipped}} if warm else {})}


@dataclasses.dataclass
class Learnt:
    """What a warm-started search learnt from: a kept search of another seed."""
    seed: int  # that search's seed
    found: WarmStart  # its trials, as Optuna trials
    best: float  # its best result, of any epoch: where a second search starts


def warm_source(kept: Path, seed: int) -> int:
    """Which kept default-sampler search seed `seed`'s search learns from: never its own (a
    repeat of its own search would teach it its own proposals), and each kept one in turn."""
    seeds = sorted(int(p.name.rsplit("-", 1)[1]) for p in kept.glob(f"{DEFAULT_SAMPLER}-*")
                   if (p / "mlflow.db").is_file())
    others = [s for s in seeds if s != seed]
    if not others:
        raise UserError(f"--warm-start {kept}: no kept {DEFAULT_SAMPLER} search of another seed "
                        f"(folders {DEFAULT_SAMPLER}-N with an mlflow.db, from --keep)")
    own = seeds[seed % len(seeds)]
    return own if own != seed else others[seed % len(others)]


def learnt_from(space: Space, sampler: str, seed: int, args: argparse.Namespace,
                data: SearchData) -> Learnt | None:
    """With --warm-start, the default sampler's search starts from the finished trials of a kept
    search of the same task (another seed): a second search of a space, as `--warm-start` gives
    a user. Random sampling ignores history, so its searches stay cold."""
    if not args.warm_start or sampler != DEFAULT_SAMPLER:
        return None
    from searcher.spec.feasibility import proposal_cost
    from searcher.tracking import store as tracking
    from searcher.tune.warm_start import load_warm_start

    source = warm_source(Path(args.warm_start), seed)
    store = Path(args.warm_start) / f"{DEFAULT_SAMPLER}-{source}"
    client = tracking.connect(f"sqlite:///{store / 'mlflow.db'}")
    found = load_warm_start(client, space, f"quality-{DEFAULT_SAMPLER}-{source}",
                            proposal_cost(space.settings, len(data.classes), data.image_shape))
    best = max((v for t in found.trials for v in t.intermediate_values.values()), default=math.nan)
    return Learnt(source, found, round(best, 4))


# ----------------------------------------------------------------------------- figures

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
             + f"{'mean':>8}{'std':>8}  trials per seed  infeasible per seed"]
    for n in names:
        b = q[n]
        lines.append(f"{name(n):<{width}}" + "".join(f"{_number(v):>8}" for v in b["final_best"])
                     + f"{_number(b['final_best_mean']):>8}{_number(b['final_best_std']):>8}  "
                     f"{'/'.join(map(str, b['trials'])):<15}  "
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
                  f"random's final mean best ({_number(q[BASELINE]['final_best_mean'])}) {when}"]
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


# ----------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    claim = __doc__.split("\n")[0].split(": ", 1)[1]
    p = argparse.ArgumentParser(prog=PROG, description=claim[0].upper() + claim[1:])
    p.add_argument("--data-dir",
                   help="folder holding cifar-10-batches-py/ (required unless --smoke)")
    p.add_argument("--space", help=f"space file (default {FULL['space']})")
    p.add_argument("--seeds", type=int, help=f"searches per sampler (default {FULL['seeds']})")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds run are FIRST_SEED .. FIRST_SEED+SEEDS-1 (default 0): another "
                        "sample of the same design, to pool with an earlier run (--pool)")
    p.add_argument("--budget", type=float,
                   help=f"seconds per search (default {FULL['budget']:g})")
    p.add_argument("--epochs", type=int, help=f"most epochs per trial (default {FULL['epochs']})")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA's grace period (epochs)")
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA's reduction factor")
    p.add_argument("--samplers", default=f"{DEFAULT_SAMPLER},{BASELINE}",
                   help="comma-separated, run in this order for each seed")
    p.add_argument("--train-images", type=int,
                   help=f"training images, the first of the split (default {FULL['train_images']})")
    p.add_argument("--val-images", type=int,
                   help=f"validation images (default {FULL['val_images']})")
    p.add_argument("--keep", metavar="DIR",
                   help="keep every search's MLflow store and Optuna journal in DIR, to trace "
                        "what each sampler was told (default: a temporary folder)")
    p.add_argument("--pool", nargs="+", metavar="JSON",
                   help="run nothing: pool earlier runs' JSON files (other seeds of the same "
                        "design) into one set of figures (see quality_pool)")
    p.add_argument("--baseline-from", metavar="JSON",
                   help="run only the default sampler and take random's figures from this "
                        "earlier run (or pool) of the same task and seeds: half the time, but "
                        "not in turns")
    p.add_argument("--with-baselines", action="store_true",
                   help="keep the space's hand-made baselines: they run first in every search, "
                        "for both samplers, as in the product; the figures count sampled "
                        "networks only")
    p.add_argument("--warm-start", metavar="KEPT",
                   help="the default sampler's searches start from the finished trials of the "
                        f"{DEFAULT_SAMPLER} searches kept in KEPT (an earlier --keep), each from "
                        "another seed's: a second search of the space, as --warm-start gives a "
                        "user (random sampling ignores history and stays cold)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--png", help="the curves' plot (default: the --json path with .png)")
    p.add_argument("--smoke", action="store_true",
                   help=f"seconds-long CI run: generated data, a tiny space, "
                        f"{SMOKE['seeds']} seeds x {SMOKE['budget']:g} s")
    args = p.parse_args(argv)
    for key, value in {**FULL, **(SMOKE if args.smoke else {})}.items():
        if getattr(args, key) is None and not (args.smoke and key == "space"):
            setattr(args, key, value)
    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if args.baseline_from:
        args.samplers = [s for s in args.samplers if s != BASELINE]
    if not args.smoke and not args.data_dir and not args.pool:
        p.error("--data-dir is required (the folder holding cifar-10-batches-py/), or use --smoke")
    if not set(args.samplers) <= set(SAMPLERS) or len(set(args.samplers)) < len(args.samplers):
        p.error(f"--samplers: distinct names from {', '.join(SAMPLERS)}")
    claim = [DEFAULT_SAMPLER] + ([] if args.baseline_from else [BASELINE])
    if not set(claim) <= set(args.samplers):
        p.error(f"--samplers must include {' and '.join(claim)}: they are the claim")
    if args.warm_start and not Path(args.warm_start).is_dir():
        p.error(f"--warm-start {args.warm_start}: not a folder (give an earlier run's --keep)")
    if (args.first_seed < 0 or args.seeds < 1 or args.budget <= 0 or args.train_images < 1
            or args.val_images < 1):
        p.error("--first-seed must be >= 0; --seeds, --budget, --train-images and "
                "--val-images must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with one_line_errors(PROG):
        return _pool(args) if args.pool else _run(args)


def _pool(args: argparse.Namespace) -> int:
    from searcher.bench.quality_pool import load

    result = load(args.pool)
    _save(result, args)
    print(table(result["quality"]))
    return 0


def _save(result: dict[str, Any], args: argparse.Namespace) -> None:
    from searcher.bench.common import write_json

    if args.json:
        write_json(args.json, result)
    png = args.png or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png:
        plot(result["quality"], Path(png))
        print(f"[quality] curves: {png}")


def earlier_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """`--baseline-from`'s `quality`, checked to be of the same task and seeds as this run."""
    from searcher.bench.quality_pool import PoolError, read

    q = read(args.baseline_from)["quality"]
    if BASELINE not in q or BASELINE not in q["curves"]:
        raise PoolError(f"{args.baseline_from}: no {BASELINE} figures in it")
    numbers = list(q.get("seed_numbers") or range(q["seeds"]))
    if numbers != seed_numbers(args):
        raise PoolError(f"{args.baseline_from}: its seeds {numbers} are not this run's "
                        f"{seed_numbers(args)} (--seeds, --first-seed)")
    # What makes it the same task; the space file may differ (a screen changes the default
    # sampler's settings, which random sampling does not read).
    task = {"time_budget_s": args.budget, "epochs": args.epochs,
            "grace_period": args.grace_period, "reduction_factor": args.reduction_factor,
            "train_images": args.train_images, "val_images": args.val_images,
            "metric": METRIC, "smoke": args.smoke}
    differ = [k for k, v in task.items() if q["settings"].get(k) != v]
    if bool(q["settings"].get("with_baselines")) != args.with_baselines:
        differ.append("with_baselines")
    if differ:
        raise PoolError(f"{args.baseline_from}: another task ({', '.join(differ)} differ)")
    return q


def _run(args: argparse.Namespace) -> int:
    import logging
    import os
    import platform

    import ray
    import torch

    from searcher.bench.common import machine_info, synthetic_cifar
    from searcher.spec.space import load_space

    result = {**machine_info("cuda" if torch.cuda.is_available() else "cpu", VERSIONS),
              "python": platform.python_version()}
    baseline = earlier_baseline(args) if args.baseline_from else None  # a bad one fails now
    runs: list[dict[str, Any]] = []
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=False)
    with (contextlib.nullcontext(args.keep) if args.keep
          else tempfile.TemporaryDirectory(prefix="searcher-quality-")) as tmp:
        root = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else synthetic_cifar(
            root / "data", SMOKE_IMAGES_PER_BATCH, learnable=True)
        space_file = Path(args.space) if args.space else root / "smoke_space.py"
        if not args.space:
            space_file.write_text(SMOKE_SPACE)
        load_space(space_file, overrides(args.samplers[0], 0, args, root))  # a bad one fails now
        data = reduced_task(data_dir, args.train_images, args.val_images)
        started_ray = not ray.is_initialized()
        if started_ray:  # one Ray for every search: its start-up is in no search's budget
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                     logging_level=logging.WARNING)
        try:
            total = args.seeds * len(args.samplers)
            for seed in seed_numbers(args):
                for sampler in args.samplers:  # in turns: machine noise falls on both alike
                    where = f"[quality] {len(runs) + 1}/{total} {sampler} seed {seed}"
                    print(f"{where}: started, {args.budget:g} s budget "
                          f"({time.strftime('%H:%M:%S')})", flush=True)
                    run = one_search(space_file, sampler, seed, args, data,
                                     root / f"{sampler}-{seed}")
                    runs.append(run)
                    print(f"{where}: done in {run['wall_s']:.0f} s, best {METRIC} "
                          f"{_number(run['final_best'])}, {run['trials']} trials, "
                          f"{run['infeasible']} infeasible proposals", flush=True)
        finally:
            if started_ray:
                ray.shutdown()
    result["quality"] = summarise(runs, args, baseline)
    _save(result, args)  # first: forty minutes of searches are not lost to a printing error
    print(table(result["quality"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
