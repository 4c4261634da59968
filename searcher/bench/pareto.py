"""`python -m searcher.bench pareto`: the default sampler finds a better accuracy-latency front than random.

Claim: at the same wall-clock budget, on the same space and data, a Pareto search
(`second_objective="latency_ms"`) with the default sampler (Optuna's TPE modelling both
objectives) ends with a larger hypervolume of (val_acc, median latency) than one with random
sampling, and a better network within the latency bound.

How it is measured: for each seed, one search per sampler, in turns (default, random, default,
...) so that a busy machine slows both alike, each until its --budget seconds are spent. Every
search is the real machinery, as the quality benchmark runs it (`quality`): the real space file
with its hand-made baselines dropped (--with-baselines keeps them), Ray Tune with ParetoASHA on
the local Ray, MLflow logging into a throwaway sqlite store, the same slice of CIFAR-10. Each
trial times its net before training (median of single passes at batch 1, on the trial's own
device and threads: one CPU thread with the cifar10 space), and a net slower than
--max-latency-ms is recorded infeasible and never trained; 1 ms cuts the cifar10 space between
its tutorial nets (about 0.3 ms on one thread of a 2-core CPU) and its batch-normalised one
(about 1.6 ms). Figures, per sampler, one per seed:
- hypervolume        the area of (val_acc, latency_ms) that the search's trained nets dominate
                     up to the fixed reference point (chance accuracy, the bound), in accuracy x
                     ms; over sampled nets only (never the space's baselines, even when they
                     ran), each at its best epoch
- best_under_budget  the best val_acc of a net within the bound (null: none trained)
- trials, trained, too_slow (timed over the bound), infeasible (every proposal never trained:
                     too slow, or over the space's size limits)
and hypervolume_ratio (mean default / mean random: above 1 supports the claim) and
best_under_budget_difference (mean default - mean random).

--variants one_objective's id (`tpe-one-objective`) adds or runs instead the default sampler in a
one-objective search under the same bound (TPE on accuracy alone, plain ASHA), under the label
`one_objective`: what the Pareto search itself adds over a bound alone.

The JSON nests as the quality benchmark's does: `pareto.hypervolume.default` is
result["pareto"]["hypervolume"]["default"] (nested dicts, no dotted keys), a list in seed order
(`pareto.seeds`). Default: 3 seeds x 2 samplers x 210 s, about 25 minutes on a 2-core CPU.
--smoke: generated data (or --data-dir's), quality's tiny space and a 0.3 ms bound, 2 seeds x
20 s, for CI. Output: a table, --json FILE and a PNG of each seed's fronts.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from searcher.bench.pareto_report import (
    LABELS,
    ONE_OBJECTIVE,
    SECOND,
    _number,
    best_under_budget,
    front_points,
    plot,
    search_hypervolume,
    summarise,
    table,
    trained_points,
)
from searcher.bench.quality import SMOKE, SMOKE_IMAGES_PER_BATCH, SMOKE_SPACE
from searcher.bench.quality_report import BASELINE, DEFAULT_SAMPLER, METRIC, seed_numbers
from searcher.bench.quality_search import overrides
from searcher.errors import one_line_errors
from searcher.spec.settings import DATA_DIR_ENV
from searcher.training.data import SearchData

PROG = "python -m searcher.bench pareto"

# ----------------------------------------------------------------------------- setup

VERSIONS = ("ray", "optuna", "mlflow", "numpy")
SAMPLERS = (DEFAULT_SAMPLER, BASELINE)  # what --variants runs unless told

# Options that differ between the real measurement and the smoke run (an option given wins).
# 6 searches of 210 s, each with about 40 s of start and wind-down (Tune, the store, the last
# epochs in flight), fit in about 25 minutes on 2 cores.
FULL = {"seeds": 3, "budget": 210.0, "epochs": 4, "train_images": 10_000, "val_images": 2_000,
        "space": "spaces/cifar10.py", "max_latency_ms": 1.0}
# Quality's tiny space times at 0.1-0.6 ms on one thread: 0.3 ms makes some nets too slow, so
# the smoke run exercises every figure.
SMOKE_BOUND = {**SMOKE, "max_latency_ms": 0.3}


# ----------------------------------------------------------------------------- one search

def search_overrides(sampler: str, seed: int, args: argparse.Namespace,
                     folder: Path) -> dict[str, Any]:
    """Quality's settings for one search, made a Pareto search against latency at batch 1 (the
    one-objective variant: the default sampler on accuracy alone, under the same bound)."""
    one = sampler == ONE_OBJECTIVE
    return {**overrides(DEFAULT_SAMPLER if one else sampler, seed, args, folder),
            "experiment": f"pareto-{sampler}-{seed}", "second_objective": None if one else SECOND,
            "max_latency_ms": args.max_latency_ms, "latency_batch": 1}


def one_search(space_file: Path, sampler: str, seed: int, args: argparse.Namespace,
               data: SearchData, folder: Path) -> dict[str, Any]:
    """One real Pareto search; its figures, its trained nets and its front."""
    from searcher.bench.common import logged_search
    from searcher.bench.load import measured
    from searcher.bench.trace import trace
    from searcher.spec.objectives import reference_point
    from searcher.spec.space import load_space
    from searcher.tune.study_searcher import INFEASIBLE_ATTR

    folder.mkdir(parents=True)
    space = load_space(space_file, search_overrides(sampler, seed, args, folder))
    if not args.with_baselines:
        space = dataclasses.replace(space, baselines={})
    with measured() as load:
        result = logged_search(space, data, folder)
    reference = reference_point(space.settings, len(data.classes))
    points = trained_points(result.records)
    return {"sampler": sampler, "seed": seed,
            "hypervolume": round(search_hypervolume(points, reference), 6),
            "best_under_budget": round(best_under_budget(result.records, args.max_latency_ms), 4),
            "trials": len(result.records),
            "trained": sum(1 for r in result.records if r.baseline is None and r.logged),
            "too_slow": sum(1 for r in result.records if r.outcome.startswith("infeasible")),
            "infeasible": sum(1 for t in result.study.trials if INFEASIBLE_ATTR in t.user_attrs),
            "proposals": len(result.study.trials), "errors": result.errors,
            "wall_s": round(result.wall_time_s, 1), "load": load.figures,
            "reference_point": list(reference),
            "points": [[round(a, 4), round(ms, 4)] for a, ms in points],
            "front": [[round(a, 4), round(ms, 4)] for a, ms in front_points(points)],
            **trace(result.records, space.settings.to_dict()),
            "settings": space.settings.to_dict()}


# ----------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    claim = __doc__.split("\n")[0].split(": ", 1)[1]
    p = argparse.ArgumentParser(prog=PROG, description=claim[0].upper() + claim[1:])
    p.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV),
                   help=f"folder holding cifar-10-batches-py/ (default ${DATA_DIR_ENV}; "
                        f"required unless --smoke)")
    p.add_argument("--space", help=f"space file (default {FULL['space']})")
    p.add_argument("--max-latency-ms", type=float,
                   help=f"the latency bound: slower nets are never trained, and it is the "
                        f"reference point's latency (default {FULL['max_latency_ms']:g})")
    p.add_argument("--seeds", type=int, help=f"searches per sampler (default {FULL['seeds']})")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds run are FIRST_SEED .. FIRST_SEED+SEEDS-1 (default 0)")
    p.add_argument("--budget", type=float,
                   help=f"seconds per search (default {FULL['budget']:g})")
    p.add_argument("--epochs", type=int, help=f"most epochs per trial (default {FULL['epochs']})")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA's grace period (epochs)")
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA's reduction factor")
    p.add_argument("--first-look", action="store_true",
                   help="the variant with first looks: every trial is scored first after part "
                        "of its first epoch (the setting first_look, off by default)")
    p.add_argument("--train-images", type=int,
                   help=f"training images, the first of the split (default {FULL['train_images']})")
    p.add_argument("--val-images", type=int,
                   help=f"validation images (default {FULL['val_images']})")
    p.add_argument("--variants", default=",".join(SAMPLERS),
                   help=f"comma-separated, run in this order for each seed: "
                        f"{', '.join(LABELS)} ({ONE_OBJECTIVE}: the default sampler on accuracy "
                        f"alone, plain ASHA, under the same bound; default "
                        f"{','.join(SAMPLERS)})")
    p.add_argument("--with-baselines", action="store_true",
                   help="keep the space's hand-made baselines: they run first in every search; "
                        "the figures still count sampled networks only")
    p.add_argument("--keep", metavar="DIR",
                   help="keep every search's MLflow store and Optuna journal in DIR "
                        "(default: a temporary folder)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--png", help="the fronts' plot (default: the --json path with .png)")
    p.add_argument("--smoke", action="store_true",
                   help=f"seconds-long CI run: generated data unless --data-dir, a tiny space, "
                        f"{SMOKE_BOUND['seeds']} seeds x {SMOKE_BOUND['budget']:g} s, "
                        f"a {SMOKE_BOUND['max_latency_ms']:g} ms bound")
    args = p.parse_args(argv)
    for key, value in {**FULL, **(SMOKE_BOUND if args.smoke else {})}.items():
        if getattr(args, key) is None and not (args.smoke and key == "space"):
            setattr(args, key, value)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or set(args.variants) - set(LABELS):
        p.error(f"--variants: choose from {', '.join(LABELS)}")
    if not args.smoke and not args.data_dir:
        p.error(f"--data-dir is required (the folder holding cifar-10-batches-py/; or set "
                f"${DATA_DIR_ENV}), or use --smoke")
    if (args.first_seed < 0 or args.seeds < 1 or args.budget <= 0 or args.train_images < 1
            or args.val_images < 1 or not args.max_latency_ms > 0):
        p.error("--first-seed must be >= 0; --seeds, --budget, --train-images, --val-images "
                "and --max-latency-ms must be positive")
    # Stores and artifact locations are URIs, which take absolute paths.
    args.keep = args.keep and str(Path(args.keep).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with one_line_errors(PROG):
        return _run(args)


def _save(result: dict[str, Any], args: argparse.Namespace) -> None:
    from searcher.bench.common import write_json

    if args.json:
        write_json(args.json, result)
    png = args.png or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png:
        plot(result["pareto"], Path(png))
        print(f"[pareto] fronts: {png}")


def _run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from searcher.bench.common import machine_info, one_ray, reduced_task, synthetic_cifar
    from searcher.spec.space import load_space

    result = {**machine_info("cuda" if torch.cuda.is_available() else "cpu", VERSIONS),
              "python": platform.python_version()}
    runs: list[dict[str, Any]] = []
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=False)
    with (contextlib.nullcontext(args.keep) if args.keep
          else tempfile.TemporaryDirectory(prefix="searcher-pareto-")) as tmp:
        root = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else synthetic_cifar(
            root / "data", SMOKE_IMAGES_PER_BATCH, learnable=True)
        space_file = Path(args.space) if args.space else root / "smoke_space.py"
        if not args.space:
            space_file.write_text(SMOKE_SPACE)
        load_space(space_file, search_overrides(SAMPLERS[0], 0, args, root))  # a bad one fails now
        data = reduced_task(data_dir, args.train_images, args.val_images)
        with one_ray():
            total = args.seeds * len(args.variants)
            for seed in seed_numbers(args):
                for sampler in args.variants:  # in turns: machine noise falls on all alike
                    where = f"[pareto] {len(runs) + 1}/{total} {sampler} seed {seed}"
                    print(f"{where}: started, {args.budget:g} s budget, bound "
                          f"{args.max_latency_ms:g} ms ({time.strftime('%H:%M:%S')})", flush=True)
                    run = one_search(space_file, sampler, seed, args, data,
                                     root / f"{sampler}-{seed}")
                    runs.append(run)
                    print(f"{where}: done in {run['wall_s']:.0f} s, hypervolume "
                          f"{run['hypervolume']:.4f}, best {METRIC} under the bound "
                          f"{_number(run['best_under_budget'])}, {run['trained']} of {run['trials']} "
                          f"trials trained, {run['too_slow']} too slow, {run['infeasible']} "
                          f"proposals never trained", flush=True)
    result["pareto"] = summarise(runs, args)
    _save(result, args)  # first: 25 minutes of searches are not lost to a printing error
    print(table(result["pareto"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
