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
data, a tiny space searched one trial at a time, 2 seeds x 20 s, for CI. Output: a table,
--json FILE and a PNG of the curves.

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from searcher.bench.quality_report import (
    BASELINE,
    DEFAULT_SAMPLER,
    METRIC,
    _number,
    plot,
    seed_numbers,
    summarise,
    table,
)
from searcher.bench.quality_search import one_search, overrides
from searcher.errors import one_line_errors
from searcher.spec.settings import SAMPLERS

PROG = "python -m searcher.bench quality"

# ----------------------------------------------------------------------------- setup

VERSIONS = ("ray", "optuna", "mlflow", "numpy")

# Options that differ between the real measurement and the smoke run (an option given wins).
FULL = {"seeds": 3, "budget": 360.0, "epochs": 4, "train_images": 10_000, "val_images": 2_000,
        "space": "spaces/cifar10.py"}
# 20 s: in a fresh clone under a busy CI, no trial had started within 10 s, nor within 15 s.
SMOKE = {"seeds": 2, "budget": 20.0, "epochs": 2, "train_images": 500, "val_images": 60}
SMOKE_IMAGES_PER_BATCH = 120  # x5 training batches: 540 training, 60 validation images

# Small enough to train in a fraction of a second, with a limit that makes some proposals
# infeasible, so that the smoke run exercises every figure; one trial at a time, so that it
# leaves the machine's other cores to other work (CI runs tests beside it).
SMOKE_SPACE = '''
SETTINGS = {"cpus_per_trial": 1, "max_mmacs": 3, "max_concurrent_trials": 1}


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


# ----------------------------------------------------------------------------- one search


# ----------------------------------------------------------------------------- figures


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
    p.add_argument("--first-look", action="store_true",
                   help="the variant with first looks: every trial is scored first after part "
                        "of its first epoch (the setting first_look, off by default)")
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
    # Stores and artifact locations are URIs, which take absolute paths.
    args.keep = args.keep and str(Path(args.keep).resolve())
    args.warm_start = args.warm_start and str(Path(args.warm_start).resolve())
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
    if q["settings"].get("first_look", False) != args.first_look:  # older runs took none
        differ.append("first_look")
    if bool(q["settings"].get("with_baselines")) != args.with_baselines:
        differ.append("with_baselines")
    if differ:
        raise PoolError(f"{args.baseline_from}: another task ({', '.join(differ)} differ)")
    return q


def _run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from searcher.bench.common import machine_info, one_ray, reduced_task, synthetic_cifar
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
        with one_ray():
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
    result["quality"] = summarise(runs, args, baseline)
    _save(result, args)  # first: forty minutes of searches are not lost to a printing error
    print(table(result["quality"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
