"""Ray Tune and Optuna: run a space's trials with a seeded TPE sampler and the ASHA scheduler."""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from searcher.data import SearchData
from searcher.space import Space
from searcher.tracking import MLflowTrialLogger
from searcher.trial import make_trainable

DEFAULT_GPU_SHARE = 0.25  # small CNNs leave most of a card idle; four share one


@dataclass
class SearchResult:
    records: list[Any]  # tracking.TrialRecord, in start order
    study: optuna.Study
    wall_time_s: float
    experiment_path: str
    errors: int


def init_ray(address: str | None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS); else start a local Ray."""
    # With num_to_keep set, Tune snapshots the experiment after checkpoints and warns that this
    # is frequent; on a local disk it costs milliseconds.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True,
             include_dashboard=False if not address else None)


def gpus_per_trial(requested: float | None) -> float:
    if requested is not None:
        return requested
    return DEFAULT_GPU_SHARE if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def make_study(space: Space) -> tuple[optuna.Study, optuna.storages.BaseStorage, str]:
    """A study we own, with the space's baselines queued as its first trials.

    OptunaSearch ignores `points_to_evaluate` with a define-by-run space in some Ray releases;
    queueing the points in the study it loads works in all of them.
    """
    s = space.settings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=s.seed, multivariate=True, group=True,
                                             constant_liar=True,
                                             n_startup_trials=len(space.baselines) + 6)
    storage = optuna.storages.InMemoryStorage()
    name = f"{space.name}-{int(time.time())}"
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                direction="maximize" if s.mode == "max" else "minimize")
    for params in space.baselines.values():
        study.enqueue_trial(params)
    return study, storage, name


def run_search(space: Space, data: SearchData, tracking_uri: str, parent_run_id: str) -> SearchResult:
    s = space.settings
    init_ray(s.address)
    study, storage, study_name = make_study(space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        searcher = OptunaSearch(space=space.fn, metric=s.metric, mode=s.mode,
                                sampler=study.sampler, study_name=study_name, storage=storage)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=s.epochs,
                              grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    logger = MLflowTrialLogger(tracking_uri, parent_run_id, space)
    storage_path = s.storage_path or str(Path.cwd() / "ray_results")
    tuner = tune.Tuner(
        make_trainable(data, s, gpus_per_trial(s.gpus_per_trial)),
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, search_alg=searcher, scheduler=scheduler,
            num_samples=s.num_samples, time_budget_s=s.time_budget_s,
            max_concurrent_trials=s.max_concurrent_trials, reuse_actors=True,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            # verbose=0: the callback prints one line per epoch and per finished trial instead
            # of Tune's tables, which run to a screen per result.
            name=study_name, storage_path=storage_path, callbacks=[logger], verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=s.metric, checkpoint_score_order=s.mode),
            failure_config=tune.FailureConfig(max_failures=0)),
    )
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    errors = sum(1 for r in results if r.error is not None)
    return SearchResult(list(logger.records.values()), study, wall,
                        str(Path(storage_path) / study_name), errors)
