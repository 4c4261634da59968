"""Ray Tune and Optuna: run a space's trials with the space's Optuna sampler and the ASHA scheduler."""
from __future__ import annotations

import errno
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Container

import optuna
import ray
from ray import tune

from searcher.errors import UserError
from searcher.objective import optuna_direction
from searcher.sampling import fast_tpe
from searcher.sampling.samplers import make_sampler
from searcher.spec.feasibility import Cost, proposal_check, proposal_cost
from searcher.spec.settings import SECOND_OBJECTIVES, Settings
from searcher.spec.space import Space
from searcher.training.data import SearchData
from searcher.tune import driver_lock, interrupt, limits, progress, sharing
from searcher.tune.free_space import FreeSpace
from searcher.tune.interrupt import InterruptWatch
from searcher.tune.resources import plan
from searcher.tune.scheduler import BaselineASHA, ParetoASHA, rungs
from searcher.tune.state import (LIMITS, OWN_LIMITS, SearchState, new_search_name, state_root,
                                 storage_root, study_database)
from searcher.tune.study_searcher import INFEASIBLE_ATTR, StudySearcher, close_unfinished
from searcher.tune.trainable import make_trainable
from searcher.tune.trial_logger import MLflowTrialLogger, active_logger, outbox_folder
from searcher.tune.warm_start import WARM_START_ATTR, WarmStart

MAX_FAILURES = 3  # restarts of a trial whose node or worker died (spot instances)


@dataclass
class SearchResult:
    records: list[Any]  # trial_logger.TrialRecord, in start order
    study: optuna.Study
    wall_time_s: float
    started_at: float  # time.time() when Tune started: anytime curves count from here
    experiment_path: str  # the search folder: search file, Optuna journal, leaderboard
    errors: int
    unlogged: list[str]  # MLflow updates the tracking store never accepted
    proposals: int = 0  # what the sampler proposed, infeasible ones included
    infeasible: int = 0  # proposals that could not be trained within the limits (never run)


CONNECT_TIMEOUT_S = 5.0  # a live head answers a TCP connect in milliseconds, even across a VPC


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: `address`, else $RAY_ADDRESS; None starts a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_cluster(address: str | None) -> None:
    """Fail at once, with one line, if nothing listens at the cluster's address.

    ray.init retries an unreachable GCS for minutes, printing warnings; a TCP connect tells in
    seconds. "auto" and "local" are left to Ray, which resolves them itself.
    """
    address = cluster_address(address)
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT; fix "
                        f"--address / RAY_ADDRESS")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({type(exc).__name__}: {exc}); "
                        f"start it (`ray start --head`, `ray up cluster.yaml`) or fix --address / "
                        f"RAY_ADDRESS") from None


# Tune settings a search runs with, unless the user set them:
# - with num_to_keep set, Tune snapshots the experiment after checkpoints (see
#   `checkpoint_config`) and warns that this is frequent;
# - no per-result loggers of Tune's own: see `configure_tune`.
TUNE_ENV = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
            "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def configure_tune() -> None:
    """Set TUNE_ENV (where the user has not), before a Tuner is made or restored.

    Tune adds a CSV, a JSON and a TensorBoard logger to every run unless told not to, and runs
    them on its control loop, where a trial waiting in `tune.report` waits for them too; MLflow
    keeps every metric already. They take a large share of the driver's results per second, the
    JSON one alone most of it (BENCHMARKS-LOG.md, "Scale"). Without result.json files, Tune's result grid
    warns at the end, trial by trial, that it found none: the search reads its results from the
    study and MLflow, not from the grid, so that warning is silenced.
    """
    for name, value in TUNE_ENV.items():
        os.environ.setdefault(name, value)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


# Tune's checkpoints a trial keeps: its best CHECKPOINTS_KEPT by the metric, and its latest.
CHECKPOINTS_KEPT = 4


def checkpoint_config(metric: str, mode: str) -> tune.CheckpointConfig:
    """What Tune keeps of a trial's checkpoints: the latest (a restarted or resumed trial goes
    on from it) and the best CHECKPOINTS_KEPT (the best also goes to MLflow at once).

    Not 1: Tune snapshots the whole experiment (every trial's state as JSON, the searcher's
    pickle) whenever one trial has written `num_to_keep` checkpoints since the last snapshot,
    so that the snapshot never names a checkpoint it has deleted. With 1 that is a snapshot
    per checkpoint, whose cost grows with the trials of the search until it takes over the
    driver; 4 spaces the snapshots out, more gains nothing, and a trial keeps at most 5
    (BENCHMARKS-LOG.md, "Scale").
    """
    return tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT, checkpoint_score_attribute=metric,
                                 checkpoint_score_order=mode)


def init_ray(address: str | None) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS), checked to answer; else start a local Ray.
    Returns where the search runs, for its first line."""
    configure_tune()
    address = cluster_address(address)
    if ray.is_initialized():
        return where_it_runs(address)
    check_cluster(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True,
                 include_dashboard=False if not address else None)
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc}); start it with "
                        f"`ray up cluster.yaml` or fix --address / RAY_ADDRESS") from None
    return where_it_runs(address)


def where_it_runs(address: str | None) -> str:
    """'local Ray: 2 CPUs, 0 GPUs' or 'Ray cluster at HOST:PORT: 3 nodes, 8 CPUs, 1 GPU up now'."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    cpus, gpus = (sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU"))
    if address is None:
        return (f"local Ray: {cpus:g} CPUs, {gpus:g} GPUs (a cluster started with `ray up` runs "
                f"searches submitted as jobs: docs/cluster.md)")
    gcs = ray.get_runtime_context().gcs_address
    return (f"Ray cluster at {gcs}: {len(nodes)} node{'s' * (len(nodes) != 1)}, {cpus:g} CPUs, "
            f"{gpus:g} GPUs up now")


def make_study(space: Space, folder: Path, earlier: list[optuna.trial.FrozenTrial] = (),
               database: str | None = None, cost: Cost | None = None,
               measured: Container[str] = ()) -> optuna.Study:
    """A study we own, named after the search folder and kept in a journal file there or in
    `database` (see searcher.tune.state): the trials of earlier searches it learns from (warm start)
    first, then the space's baselines queued to run first, the costliest first (by `cost`), but
    for those `measured` already on the same data by a search it learns from.

    Costliest first, because the longest baseline should not be the last to start: while it
    waits for a slot TPE, which learns its good region from the baselines, proposes nothing
    modelled.

    Baselines go through the study rather than Tune's `points_to_evaluate`, which Ray's Optuna
    integration ignores with a define-by-run space.
    """
    s = space.settings
    study = optuna.create_study(storage=SearchState(folder, database).storage(),
                                study_name=folder.name,
                                sampler=make_sampler(s.sampler, s.seed, len(space.baselines),
                                                     s.cost_weight, second_objective(s)),
                                direction=optuna_direction(s.mode))
    study.add_trials(list(earlier))
    points = [p for name, p in space.baselines.items() if name not in measured]
    for params in sorted(points, key=lambda p: -((cost(p) if cost else None) or 0.0)):
        study.enqueue_trial(params)
    return study


def second_objective(settings: Settings) -> str | None:
    """The trial metric a Pareto search minimises beside its metric; None for one objective."""
    return SECOND_OBJECTIVES[settings.second_objective] if settings.second_objective else None


def make_scheduler(space: Space) -> BaselineASHA | ParetoASHA:
    """ASHA on the metric, or on the metric and the second objective (a Pareto search)."""
    s, baselines = space.settings, list(space.baselines.values())
    if second_objective(s):
        return ParetoASHA(baselines, s.metric, s.mode, second_objective(s), **rungs(s))
    return BaselineASHA(baselines, **rungs(s))


def run_search(space: Space, data: SearchData, tracking_uri: str, parent_run_id: str,
               resume: SearchState | None = None, warm: WarmStart | None = None,
               name: str | None = None) -> SearchResult:
    """Run (or, with `resume`, continue) the search; trials are logged under `parent_run_id`.
    `warm`: the finished trials of earlier searches the sampler starts from, and the baselines
    they measured, which are not run again. `name`: the new search's (default: made from the
    space's name and the time). On a cluster the search shares its slots with the other
    searches there (searcher.tune.sharing)."""
    s = space.settings
    init_ray(s.address)
    fast_tpe.install()  # also for a resumed search, whose sampler is unpickled, not built by tpe()
    # The GPU share and the trials in flight come from what the cluster can hold once scaled,
    # not from the nodes up now (none but the head, on a cluster whose workers start from 0).
    sizing = plan(s.cpus_per_trial, s.gpus_per_trial, s.max_concurrent_trials)
    print(f"[searcher] {sizing.describe(s.cpus_per_trial)}", flush=True)
    trainable = make_trainable(data, s, sizing.gpus_per_trial)
    short = FreeSpace(resume.folder if resume else state_root(s)).short()
    if short:  # before anything is written: a search must be able to save itself
        raise UserError(short)
    if resume is not None:
        # Tune restores its trials, the scheduler and the Optuna study (with its history) from
        # the experiment's own checkpoint; unfinished trials go on from their last checkpoint.
        resume.folder.mkdir(parents=True, exist_ok=True)  # a fresh machine has none yet
        try:
            tuner = tune.Tuner.restore(resume.read_record()["tune_path"], trainable,
                                       resume_unfinished=True, resume_errored=False,
                                       restart_errored=False)
        except ModuleNotFoundError as exc:  # Tune's state names classes where 0.1 had them
            if not (exc.name or "").startswith("searcher."):
                raise
            raise UserError(f"{resume.folder.name} was saved by searcher 0.1, whose modules "
                            f"have moved ({exc.name}); resume it with searcher 0.1") from None
        _record_limits(resume, s)
        return _fit(tuner, resume, s, sizing.slots)
    study_name = name or new_search_name(space.name)
    storage_path = storage_root(s)
    state = SearchState(state_root(s) / study_name, study_database(s))
    state.folder.mkdir(parents=True, exist_ok=False)
    with driver_lock.hold(study_name, state.folder, state.database):  # before --resume sees it
        shape = (len(data.classes), data.image_shape)
        cost = proposal_cost(s, *shape)
        study = make_study(space, state.folder, warm.trials if warm else (), state.database, cost,
                           warm.baselines if warm else ())
        state.write_record({"parent_run_id": parent_run_id, "tracking_uri": tracking_uri,
                            "tune_path": f"{storage_path.rstrip('/')}/{study_name}",
                            "space_file": str(space.path), "space_sha256": space.sha256,
                            "settings": s.to_dict(), OWN_LIMITS: True,
                            "created": time.time()})
        searcher = StudySearcher(study, space.sample, proposal_check(s, *shape), s.metric, s.mode,
                                 s.epochs, cost)
        scheduler = make_scheduler(space)
        shared = cluster_address(s.address) is not None  # a cluster others may use too
        logger = MLflowTrialLogger(tracking_uri, parent_run_id, space, state_folder=state.folder)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=s.metric, mode=s.mode, scheduler=scheduler,
                search_alg=sharing.SharedSlots(searcher, study_name) if shared else searcher,
                # No limit of Tune's own: Tune restores its own on --resume, deaf to new ones.
                # The search keeps to its settings' instead (searcher.tune.limits).
                num_samples=-1,
                # Also Tune's pending limit (one with a custom searcher otherwise): the autoscaler
                # sees the demand of every slot at once.
                max_concurrent_trials=sizing.slots, reuse_actors=True,
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
            run_config=tune.RunConfig(
                # verbose=0: the trial logger draws one progress line (searcher.tune.progress)
                # instead of Tune's tables, which run to a screen per result.
                name=study_name, storage_path=storage_path,
                callbacks=[InterruptWatch(), logger, *([sharing.ShareWatch()] if shared else [])],
                stop=limits.TimeBudget(), verbose=0,
                checkpoint_config=checkpoint_config(s.metric, s.mode),
                # Errors of a trial's own making end inside the trial (see trial.CONFIG_ERRORS):
                # what reaches Tune is a lost node or worker, worth retrying from its checkpoint.
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES)),
        )
        return _fit(tuner, state, s, sizing.slots)


def _record_limits(state: SearchState, settings: Settings) -> None:
    """Keep the limits this resume runs with in the search's record, for the next resume."""
    record = state.read_record()
    kept = record["settings"]
    if any(kept.get(name) != getattr(settings, name) for name in LIMITS):
        state.write_record({**record, "settings": {
            **kept, **{name: getattr(settings, name) for name in LIMITS}}})


def _fit(tuner: tune.Tuner, state: SearchState, settings: Settings, slots: int) -> SearchResult:
    """Run the search; on a cluster, as one of the searches sharing its `slots` from start to end."""
    if cluster_address(settings.address) is not None:
        sharing.join(state.name, settings.priority, slots, settings.submitter or "")
    how = "failed"
    try:
        result = _run_tuner(tuner, state, settings)
        how = "finished"
        return result
    except KeyboardInterrupt:
        how = interrupt.cancelled() or "interrupted"
        raise
    finally:
        sharing.leave(how)


def _run_tuner(tuner: tune.Tuner, state: SearchState, settings: Settings) -> SearchResult:
    start, started_at = time.perf_counter(), time.time()
    display = progress.Display(settings, verbose=settings.verbose, used=limits.time_used)
    # All given here, not by the callback or the searcher: Tune restores the ones it pickled at
    # the start.
    with outbox_folder(state.folder, state.database), progress.showing(display), \
            limits.applying(limits.Limits(settings.num_samples, settings.time_budget_s)):
        try:
            results = tuner.fit()
        except OSError as exc:  # a disk that filled faster than FreeSpace's checks
            if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            raise UserError(f"the disk is full ({exc.strerror}: {exc.filename or state.folder}):"
                            f" free space there and try --resume") from None
        display.close(active_logger().records if active_logger() else {})
    wall = time.perf_counter() - start
    if interrupt.reason():  # stopped by the search itself (a full disk), saved as after a Ctrl-C
        raise UserError(f"{interrupt.reason()} (the search is saved in {state.folder})")
    if interrupt.fired():  # Tune saved where every trial stands: leave them open to go on
        # a search submitted as a job (searcher submit) is resumed as one
        again = f"`searcher resume {state.name}`" if settings.submitter else "--resume"
        print(f"[searcher] {interrupt.cancelled() or 'interrupted'}: the search is saved in "
              f"{state.folder}; continue it with {again}", flush=True)
        raise KeyboardInterrupt
    errors = sum(1 for r in results if r.error is not None)
    logger = active_logger()
    study = state.load_study()
    # Once the search is over nothing can still be running: what is, was cut by the budget (or
    # asked by a driver that was killed before Tune's next snapshot).
    close_unfinished(study)
    state.mark_finished()
    proposals = [t for t in study.trials if WARM_START_ATTR not in t.user_attrs]
    return SearchResult(list(logger.records.values()) if logger else [], study, wall, started_at,
                        str(state.folder), errors, logger.unlogged if logger else [], len(proposals),
                        sum(1 for t in proposals if INFEASIBLE_ATTR in t.user_attrs))
