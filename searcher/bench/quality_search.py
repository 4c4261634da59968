"""One search of the quality benchmark: a sampler on a seed within the budget, and what a warm-started one learnt from."""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searcher.bench.quality_report import DEFAULT_SAMPLER, METRIC
from searcher.errors import UserError
from searcher.training.data import (
    SearchData,
)

if TYPE_CHECKING:
    from searcher.spec.space import Space
    from searcher.tune.warm_start import WarmStart



def overrides(sampler: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The settings one search runs with: all but sampler and seed are the same for every run."""
    return {"sampler": sampler, "seed": seed, "metric": METRIC, "time_budget_s": args.budget,
            "num_samples": -1, "epochs": args.epochs, "grace_period": args.grace_period,
            "reduction_factor": args.reduction_factor, "first_look": args.first_look,
            "storage_path": str(folder / "ray"),
            "experiment": f"quality-{sampler}-{seed}"}


def one_search(space_file: Path, sampler: str, seed: int, args: argparse.Namespace,
               data: SearchData, folder: Path) -> dict[str, Any]:
    """One real search; returns its counts and its (seconds since start, val_acc) results."""
    from searcher.bench.common import logged_search
    from searcher.bench.load import measured
    from searcher.bench.trace import trace
    from searcher.spec.space import load_space

    folder.mkdir(parents=True)
    space = load_space(space_file, overrides(sampler, seed, args, folder))
    if not args.with_baselines:
        space = dataclasses.replace(space, baselines={})
    warm = learnt_from(space, sampler, seed, args, data)
    with measured() as load:
        result = logged_search(space, data, folder, warm.found if warm else None)
    events = [(min(h["at"] - result.started_at, args.budget), h[METRIC])
              for rec in result.records if rec.baseline is None
              for h in rec.history if METRIC in h]
    return {"sampler": sampler, "seed": seed,
            "final_best": max((v for _, v in events), default=math.nan),
            "trials": len(result.records), "epoch_results": len(events),
            "trained": sum(1 for r in result.records if r.baseline is None and r.logged),
            "infeasible": sum(1 for t in result.study.trials if "infeasible" in t.user_attrs),
            "proposals": len(result.study.trials), "errors": result.errors,
            "wall_s": round(result.wall_time_s, 1), "load": load.figures, "events": events,
            **trace(result.records, space.settings.to_dict()),
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
