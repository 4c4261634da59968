"""Confirm a search's winner: retrain its top configurations with fresh seeds on Ray, rank by mean.

A search's best validation score is the maximum of noisy numbers, and its best trial may have
been cut short by the budget. Here each candidate is retrained from scratch for its full epochs
with S fresh seeds, in parallel Ray tasks (a GPU share each where the cluster has GPUs), each
retrain logged from the driver as an MLflow run nested under the promotion run; candidates are
ranked by the mean over seeds of their best-epoch validation score, the figure a search reports
for its trials. `refit` retrains the chosen one on train+validation.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from searcher.errors import UserError
from searcher.objective import better, sign
from searcher.tracking.tags import (
    EPOCH_METRICS,
    OUTCOME_TAG,
    PARENT_TAG,
    ROLE_TAG,
    SEED_TAG,
    SOURCE_TRIAL_ID_TAG,
    SOURCE_TRIAL_TAG,
    best_key,
)
from searcher.training.checkpoint import save_checkpoint
from searcher.training.data import SearchData
from searcher.training.retrain import Retrained, merge_train_val, retrain
from searcher.tune.trainable import chance_metrics


@dataclass(frozen=True)
class Candidate:
    """One of a search's top configurations, as its trial run and best checkpoint describe it."""
    run_id: str  # the search's trial run
    name: str  # its run name: what the network is
    trial_id: str
    search_value: float  # its best validation score in the search
    params: dict[str, str]  # as logged on the trial run
    arch: dict[str, Any]
    train: dict[str, Any]  # with `epochs`: the search's full epochs, wherever the trial stopped


@dataclass
class Confirmed:
    """A candidate's retrains, one per seed, and their spread."""
    candidate: Candidate
    retrains: list[Retrained] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # a diverged seed counts at chance level

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:  # the sample standard deviation: the spread a new seed would show
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def best_seed(self, mode: str) -> int:
        """Index of the seed whose checkpoint is promoted: the best one that did not diverge."""
        usable = [i for i, r in enumerate(self.retrains) if r.checkpoint is not None]
        if not usable:
            raise UserError(f"every retrain of {self.candidate.name} diverged; nothing to promote")
        best = usable[0]
        for i in usable[1:]:
            if better(self.values[i], self.values[best], mode):
                best = i
        return best


def fresh_seeds(search_seed: int, n: int) -> list[int]:
    """Seeds the search never used (its trials all ran with `search_seed`); the same for every
    candidate, so they differ by configuration and not by luck of the draw."""
    return [search_seed + 1 + i for i in range(n)]


def _task(arch, train, data, seed, metric, mode, validate, threads) -> Retrained:
    torch.set_num_threads(threads)
    return retrain(arch, train, data, seed, metric, mode, validate)


def run_retrains(jobs: list[tuple[Any, ...]], data: SearchData, cpus: float, gpus: float,
                 done: Callable[[int, Retrained], None]) -> list[Retrained]:
    """Run `retrain(arch, train, data, seed, metric, mode, validate)` for each job in parallel
    Ray tasks; `done(index, result)` is called in the driver as each one finishes."""
    ref = ray.put(data)  # once into the object store, shared by every task
    remote = ray.remote(_task).options(num_cpus=cpus, num_gpus=gpus)
    pending = {remote.remote(arch, train, ref, *rest, max(1, int(cpus))): i
               for i, (arch, train, *rest) in enumerate(jobs)}
    results: list[Retrained | None] = [None] * len(jobs)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ready[0])
        results[i] = ray.get(ready[0])
        done(i, results[i])
    return results  # type: ignore[return-value]


def log_retrain(client: MlflowClient, experiment_id: str, parent_run: str, cand: Candidate,
                result: Retrained, role: str, metric: str, note: str,
                inputs: list[Any] = ()) -> str:
    """One MLflow run for one retrain: its parameters, per-epoch metrics and best checkpoint."""
    failed = result.failure is not None
    tags = {PARENT_TAG: parent_run, ROLE_TAG: role, SOURCE_TRIAL_TAG: cand.run_id,
            SOURCE_TRIAL_ID_TAG: cand.trial_id, SEED_TAG: str(result.seed),
            OUTCOME_TAG: f"failed: {result.failure}" if failed else "completed",
            MLFLOW_RUN_NOTE: note}
    run_id = client.create_run(experiment_id, run_name=f"{role} {cand.name} seed {result.seed}",
                               tags=tags).info.run_id
    now = int(time.time() * 1000)
    params = {**cand.params, "seed": result.seed, "epochs": cand.train.get("epochs"),
              "train_images": result.train_images}
    metrics = [Metric(k, float(h[k]), now, int(h["epoch"]))
               for h in result.history for k in EPOCH_METRICS if k in h]
    metrics.append(Metric("train_images", result.train_images, now, 0))
    if result.best is not None:
        metrics += [Metric(best_key(metric), result.best, now, 0),
                    Metric("best_epoch", result.best_epoch, now, 0)]
    client.log_batch(run_id, metrics=metrics,
                     params=[Param(k, str(v)) for k, v in sorted(params.items())])
    if inputs:
        client.log_inputs(run_id, datasets=list(inputs))
    if result.checkpoint is not None:
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, **result.checkpoint)
            client.log_artifacts(run_id, directory, "checkpoint")
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    return run_id


def confirm(client: MlflowClient, experiment_id: str, parent_run: str,
            candidates: list[Candidate], data: SearchData, seeds: list[int], metric: str,
            mode: str, cpus: float, gpus: float, inputs: list[Any] = ()) -> list[Confirmed]:
    """Retrain every candidate with every seed; the candidates best mean first."""
    out = [Confirmed(c) for c in candidates]
    jobs = [(c.arch, c.train, seed, metric, mode, True) for c in candidates for seed in seeds]
    chance = chance_metrics(len(data.classes))[metric]
    run_ids: dict[int, str] = {}

    def done(i: int, result: Retrained) -> None:
        cand = candidates[i // len(seeds)]
        run_ids[i] = log_retrain(client, experiment_id, parent_run, cand, result, "confirm", metric,
                             f"Retrain of {cand.name} (trial {cand.trial_id}) with seed "
                             f"{result.seed}, for the promotion's confirmation", inputs)
        value = f"{metric}={result.best:.4f} (best epoch {result.best_epoch})" \
            if result.failure is None else f"failed ({result.failure}): counts as {chance:.4f}"
        print(f"[searcher] retrain {len(run_ids)}/{len(jobs)} done: {cand.name} seed {result.seed}: "
              f"{value}", flush=True)

    results = run_retrains(jobs, data, cpus, gpus, done)
    for i, result in enumerate(results):  # logged as they finished; gathered in job order
        entry = out[i // len(seeds)]
        entry.retrains.append(result)
        entry.run_ids.append(run_ids[i])
        entry.values.append(result.best if result.failure is None else chance)
    return sorted(out, key=lambda e: sign(mode) * e.mean)  # stable: ties keep the search's order


def refit(client: MlflowClient, experiment_id: str, parent_run: str, cand: Candidate,
          data: SearchData, seed: int, cpus: float, gpus: float) -> tuple[Retrained, str]:
    """Retrain `cand` on train+validation for its full epochs; the last epoch's weights are kept
    (there is nothing left to validate on)."""
    merged = merge_train_val(data)
    runs: list[str] = []

    def done(_: int, result: Retrained) -> None:
        runs.append(log_retrain(
            client, experiment_id, parent_run, cand, result, "refit", "val_acc",
            f"Refit of {cand.name} (trial {cand.trial_id}) on train+validation "
            f"({result.train_images} images), seed {result.seed}: no validation split is left, "
            f"so this run has no validation metric; its last epoch is the model tested"))
        print(f"[searcher] refit done: {cand.name} seed {seed} on {result.train_images} images"
              + (f": failed ({result.failure})" if result.failure else
                 f", train_loss={result.history[-1]['train_loss']:.4f}"), flush=True)

    (result,) = run_retrains([(cand.arch, cand.train, seed, "val_acc", "max", False)], merged,
                             cpus, gpus, done)
    if result.failure is not None:
        raise UserError(f"the refit of {cand.name} diverged ({result.failure}); promote without --refit")
    return result, runs[0]


def as_checkpoint(result: Retrained) -> dict[str, Any]:
    """A retrain's checkpoint in the shape `checkpoint.load_checkpoint` returns."""
    ckpt = dict(result.checkpoint or {})
    ckpt["trainer"] = ckpt.pop("trainer_state")
    return ckpt


def table(ranked: list[Confirmed], metric: str, mode: str, seeds: list[int],
          asked: int) -> dict[str, Any]:
    """What `confirm.json` records: every candidate's seeds, values, mean and spread, the winner."""
    rows = [{"rank": i + 1, "trial_run": e.candidate.run_id, "trial_id": e.candidate.trial_id,
             "name": e.candidate.name, "search_value": e.candidate.search_value,
             "values": e.values, "mean": e.mean, "std": e.std, "retrain_runs": e.run_ids,
             "failed_seeds": [r.seed for r in e.retrains if r.failure is not None]}
            for i, e in enumerate(ranked)]
    winner = ranked[0]
    return {"metric": metric, "mode": mode, "seeds": seeds, "confirm_k": asked,
            "candidates": rows, "winner": {**rows[0], "promoted_seed": winner.retrains[
                winner.best_seed(mode)].seed, "promoted_run": winner.run_ids[winner.best_seed(mode)]}}


def format_table(t: dict[str, Any]) -> str:
    lines = [f"{'#':>2}  {'search':>7}  {'mean':>7}  {'std':>6}  {'per seed':<28} candidate",
             "-" * 72]
    for r in t["candidates"]:
        per_seed = " ".join(f"{v:.4f}" for v in r["values"])
        lines.append(f"{r['rank']:>2}  {r['search_value']:>7.4f}  {r['mean']:>7.4f}  "
                     f"{r['std']:>6.4f}  {per_seed:<28} {r['name']} ({r['trial_id']})")
    return "\n".join(lines)
