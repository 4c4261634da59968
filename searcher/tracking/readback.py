"""A logged search read back from MLflow, page after page: its parent run, its trial runs and
what the driver knew of each trial, its trials best first with their checkpoints, its settings and
its data. The one place that queries a search's runs and turns logged parameters back into
values; resuming, warm start and promotion all read through it."""
from __future__ import annotations

import ast
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient

from searcher.errors import UserError
from searcher.objective import better, sql_order
from searcher.tracking.tags import (
    BASELINE_TAG,
    EPOCH_METRICS,
    FIRST_LOOK,
    SPEED_METRICS,
    METRIC_TAG,
    MODE_TAG,
    NODES_TAG,
    OUTCOME_DETAIL_TAG,
    OUTCOME_TAG,
    ROLE_TAG,
    TRIAL_ID_TAG,
    best_key,
    trial_filter,
)


def param_value(text: str) -> Any:
    """A parameter as MLflow keeps it (a string) back to the value that was logged: a number, a
    bool, None, a list; a plain string (a path, a name) stays itself."""
    try:
        return ast.literal_eval(text)
    # Whatever a stored value holds ("{[]: 1}" is a dict with a list for a key; deep nesting
    # exhausts the parser): a string that is not a literal stays the string it is.
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def all_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "",
             order_by: list[str] | None = None) -> list[Any]:
    """Every run that `filter_string` matches, page after page: `search_runs` returns one page
    (1,000 runs by default), and a search past 1,000 trials must read all of them back."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, order_by=order_by,
                                  page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def experiment_names(client: MlflowClient) -> dict[str, str]:
    """Experiment id -> name, for every experiment in the store, page after page."""
    names, token = {}, None
    while True:
        page = client.search_experiments(page_token=token)
        names.update((e.experiment_id, e.name) for e in page)
        token = page.token
        if not token:
            return names


def _experiment_ids(client: MlflowClient, experiment: str | None) -> list[str]:
    """The id of the experiment named `experiment`, or of every experiment when None."""
    if experiment is None:
        return list(experiment_names(client))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserError(f"no experiment {experiment!r} in the tracking store; run a search first")
    return [found.experiment_id]


def searches(client: MlflowClient, experiment: str | None = None) -> list[Any]:
    """Every search's parent run, of the experiment named `experiment` or of all, newest first."""
    ids = _experiment_ids(client, experiment)
    if not ids:
        return []
    return all_runs(client, ids, f"tags.`{ROLE_TAG}` = 'search'",
                    order_by=["attributes.start_time DESC"])


def trial_runs(client: MlflowClient, search: Any, order_by: list[str] | None = None) -> list[Any]:
    """Every trial run of the search whose parent run is `search`, first started first unless
    `order_by` says otherwise."""
    return all_runs(client, [search.info.experiment_id], trial_filter(search.info.run_id),
                    order_by=order_by or ["attributes.start_time ASC"])


@dataclass
class TrialRecord:
    """What the driver knows of one trial; the leaderboard is built from these."""
    trial_id: str
    run_id: str | None  # None until the tracking store has accepted the run
    params: dict[str, Any]
    baseline: str | None
    best: float | None = None
    best_epoch: int = 0
    epochs: int = 0
    n_params: int | None = None
    mmacs: float | None = None
    speed: dict[str, float] = field(default_factory=dict)  # tags.SPEED_METRICS, once measured
    outcome: str = "running"
    history: list[dict[str, float]] = field(default_factory=list)
    new_best: bool = False  # the latest epoch is the best so far, so its checkpoint is kept
    logged: set[int] = field(default_factory=set)  # epochs already in MLflow
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    nodes: list[str] = field(default_factory=list)  # Ray node ids the trial trained on
    resumed_from: list[int] = field(default_factory=list)  # checkpoint epochs it restarted from


def trial_records(client: MlflowClient, parent_run_id: str, metric: str,
                  mode: str) -> dict[str, TrialRecord]:
    """The trials a search has logged so far, as records, so a resumed search goes on with them."""
    records = {}
    for run in trial_runs(client, client.get_run(parent_run_id)):
        tags = run.data.tags
        rec = TrialRecord(tags[TRIAL_ID_TAG], run.info.run_id,
                          {k: param_value(v) for k, v in run.data.params.items()},
                          tags.get(BASELINE_TAG), started_at=run.info.start_time / 1000)
        by_step: dict[int, dict[str, float]] = {}
        for key in EPOCH_METRICS:
            for m in client.get_metric_history(run.info.run_id, key):
                by_step.setdefault(m.step, {})[key] = m.value
                by_step[m.step]["at"] = m.timestamp / 1000
        epochs = sorted(step for step in by_step if step != FIRST_LOOK)  # a look is no result
        rec.history = [by_step[step] for step in epochs]
        rec.logged = set(by_step)
        rec.epochs = max(by_step, default=0)
        for step in epochs:
            value = by_step[step].get(metric)
            if value is not None and better(value, rec.best, mode):
                rec.best, rec.best_epoch = value, step
        rec.n_params = int(run.data.metrics["n_params"]) if "n_params" in run.data.metrics else None
        rec.mmacs = run.data.metrics.get("mmacs")
        rec.speed = {k: run.data.metrics[k] for k in SPEED_METRICS if k in run.data.metrics}
        rec.nodes = [n for n in tags.get(NODES_TAG, "").split(",") if n]
        rec.outcome = tags.get(OUTCOME_DETAIL_TAG, tags.get(OUTCOME_TAG, "running"))
        if run.info.end_time:
            rec.finished_at = run.info.end_time / 1000
        records[rec.trial_id] = rec
    return records

def latest_search(client, experiment: str | None, run_id: str | None):
    """The search `run_id`, else the latest of `experiment`, else the latest anywhere."""
    if run_id:
        try:
            return client.get_run(run_id)
        except Exception:
            raise UserError(f"no run {run_id} in the tracking store") from None
    runs = client.search_runs(_experiment_ids(client, experiment), f"tags.`{ROLE_TAG}` = 'search'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise UserError("no search found in the tracking store; run python -m searcher.run first")
    return runs[0]


def ranked_trials(client, search, limit: int | None = None) -> list[Any]:
    """The search's trials with a score and a checkpoint, best first; the first `limit`."""
    metric, mode = search.data.tags[METRIC_TAG], search.data.tags[MODE_TAG]
    runs = trial_runs(client, search, order_by=[f"metrics.`{best_key(metric)}` {sql_order(mode)}"])
    ranked = []
    for run in runs:
        if best_key(metric) in run.data.metrics and client.list_artifacts(run.info.run_id, "checkpoint"):
            ranked.append(run)
            if limit is not None and len(ranked) == limit:
                break
    if not ranked:
        raise UserError(f"search {search.info.run_id} has no trial with a checkpoint to promote")
    return ranked


def download_checkpoint(client, run_id: str) -> dict[str, Any]:
    from searcher.training.checkpoint import load_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        return load_checkpoint(client.download_artifacts(run_id, "checkpoint", tmp))


def test_split(search, ckpt: dict[str, Any], data_dir: str | None):
    from searcher.training.data import load_split
    params = search.data.params
    data_dir = data_dir or params.get("data_dir")
    if data_dir in (None, "None"):
        from searcher.spec.settings import Settings
        data_dir = Settings().resolved_data_dir()
    return load_split(params.get("dataset", "cifar10"), data_dir, "test",
                      int(params.get("image_size", 32)), ckpt["classes"])[0]


def setting(search, name: str, default: Any) -> Any:
    """A setting of the search, as its parent run logged it; `default` if absent."""
    value = search.data.params.get(name)
    return default if value is None else param_value(value)


def search_data(search, data_dir: str | None):
    """The search's train/validation split again: the same data, fraction and seed."""
    from searcher.spec.settings import Settings
    from searcher.training.data import load_search_data
    d = Settings()
    data_dir = data_dir or setting(search, "data_dir", None) or d.resolved_data_dir()
    return load_search_data(setting(search, "dataset", d.dataset), str(data_dir),
                            int(setting(search, "image_size", d.image_size)),
                            float(setting(search, "val_fraction", d.val_fraction)),
                            int(setting(search, "seed", d.seed)),
                            bool(setting(search, "strict_data", d.strict_data)))
