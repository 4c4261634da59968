"""MLflow: the store, a parent run per search with its provenance, and a child run per trial.

Trial runs are written from the driver by a Tune callback, so the training loop never waits on
the tracking server and a trial's history lives in exactly one place.
"""
from __future__ import annotations

import ast
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE, MLFLOW_GIT_COMMIT
from ray import tune

from searcher.errors import UserError
from searcher.space import Space

ROLE_TAG = "searcher.role"  # "search" on parent runs, "trial" on children, "promotion"
OUTCOME_TAG = "searcher.outcome"
BASELINE_TAG = "searcher.baseline"
TRIAL_ID_TAG = "searcher.trial_id"
NODES_TAG = "searcher.nodes"
RESUMED_TAG = "searcher.resumed_from_epoch"
EPOCH_METRICS = ("val_acc", "val_loss", "train_loss", "epoch_time_s", "eval_time_s",
                 "images_per_s", "rss_mb", "private_mb", "dataset_shared")
RETRY_AFTER_S = 15.0  # how long the callback waits before trying an unreachable store again
PACKAGES = ("searcher", "torch", "torchvision", "ray", "optuna", "mlflow", "numpy")


def best_key(metric: str) -> str:
    """The summary metric on each trial run that promotion ranks by."""
    return f"best_{metric}"


def default_tracking_uri() -> str:
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def check_server(uri: str | None) -> None:
    """Fail at once, with one line, if `uri` names a tracking server that does not answer."""
    uri = resolve_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        import requests
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except Exception as exc:
            raise UserError(f"cannot reach the MLflow tracking server at {uri} ({type(exc).__name__}); "
                            f"start it or fix --tracking-uri / MLFLOW_TRACKING_URI") from None


def connect(uri: str | None) -> MlflowClient:
    """A client for the store at `uri`, checked to answer now, before any trial starts."""
    uri = resolve_tracking_uri(uri)
    check_server(uri)
    for name in ("mlflow.store.db.utils", "alembic"):  # schema set-up chatter on a new store
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow retries a failed request with back-off for minutes by default; the callback keeps
    # what fails and retries itself, so it should hear of an outage in seconds.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per trial run
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        raise UserError(f"cannot open the MLflow store at {uri}: {exc}") from None
    return client


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:"):  # keep artifacts beside the local database
        location = (Path(client.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


# ----------------------------------------------------------------------------- provenance

def _git_commit(cwd: Path) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True,
                               text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("-dirty" if dirty else "")) if commit else "unknown"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def start_search_run(client: MlflowClient, space: Space, data_summary: dict[str, Any]) -> str:
    """Create the search's parent run and log what it takes to reproduce it."""
    s = space.settings
    commit = _git_commit(Path(__file__).resolve().parent)
    run = client.create_run(
        experiment_id(client, space.name),
        run_name=f"search {time.strftime('%Y-%m-%d %H:%M:%S')}",
        tags={ROLE_TAG: "search", MLFLOW_GIT_COMMIT: commit,
              "searcher.space_file": str(space.path), "searcher.metric": s.metric,
              "searcher.mode": s.mode, MLFLOW_RUN_NOTE: f"Search over {space.path.name}"})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(s.to_dict().items())])
    client.log_text(run_id, space.text, f"space/{space.path.name}")
    client.log_dict(run_id, s.to_dict(), "settings.json")
    client.log_dict(run_id, {**_versions(), "git_commit": commit}, "versions.json")
    client.log_dict(run_id, data_summary, "data.json")
    return run_id


# ----------------------------------------------------------------------------- trial runs

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
    outcome: str = "running"
    history: list[dict[str, float]] = field(default_factory=list)
    new_best: bool = False  # the latest epoch is the best so far, so its checkpoint is kept
    logged: set[int] = field(default_factory=set)  # epochs already in MLflow
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    nodes: list[str] = field(default_factory=list)  # Ray node ids the trial trained on
    resumed_from: list[int] = field(default_factory=list)  # checkpoint epochs it restarted from


class MLflowTrialLogger(tune.Callback):
    """Tune callback: one MLflow child run per trial, nested under the search's parent run."""

    def __init__(self, tracking_uri: str, parent_run_id: str, space: Space):
        self.tracking_uri, self.parent_run_id, self.space = tracking_uri, parent_run_id, space
        self.metric, self.mode = space.settings.metric, space.settings.mode
        self.records: dict[str, TrialRecord] = {}
        self._client: MlflowClient | None = None
        self._outbox: list[tuple[str, Callable[[], None]]] = []  # writes the store refused
        self._last_failure = 0.0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks; a client does not pickle
        return {**self.__dict__, "_client": None, "records": {}, "_outbox": []}

    # An unreachable tracking server must not stop the search: writes that fail wait in an
    # outbox, in order, and are retried now and then and at the end; `unlogged` says what is left.
    def _send(self, what: str, write: Callable[[], None]) -> None:
        if self._outbox and time.time() - self._last_failure > RETRY_AFTER_S:
            self.flush()
        if self._outbox:
            self._outbox.append((what, write))
            return
        try:
            write()
        except Exception as exc:  # any transport or server error
            self._outbox.append((what, write))
            self._last_failure = time.time()
            print(f"[searcher] MLflow unreachable ({type(exc).__name__}); training goes on, "
                  f"updates are kept and retried", flush=True)

    def flush(self) -> None:
        while self._outbox:
            try:
                self._outbox[0][1]()
            except Exception:
                self._last_failure = time.time()
                return
            self._outbox.pop(0)

    @property
    def unlogged(self) -> list[str]:
        return [what for what, _ in self._outbox]

    def setup(self, **info) -> None:
        """Called by Tune when a search starts or resumes: pick up the runs already logged."""
        global _ACTIVE
        _ACTIVE = self
        if not self.records:
            self.records = _records_from_mlflow(self.client, self.parent_run_id, self.metric,
                                                self.mode)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _better(self, value: float, than: float | None) -> bool:
        return than is None or (value > than if self.mode == "max" else value < than)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.records:  # restarted after a failure: same run goes on
            return
        params = dict(trial.config)
        baseline = self.space.baseline_of(params)
        rec = TrialRecord(trial.trial_id, None, params, baseline)
        self.records[trial.trial_id] = rec
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, ROLE_TAG: "trial",
                TRIAL_ID_TAG: trial.trial_id, OUTCOME_TAG: "running"}
        if baseline:
            tags[BASELINE_TAG] = baseline

        def create() -> None:
            experiment = self.client.get_run(self.parent_run_id).info.experiment_id
            name = f"{trial.trial_id}" + (f" ({baseline})" if baseline else "")
            run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
            self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])
            rec.run_id = run_id
        self._send(f"trial {trial.trial_id}: its run and parameters", create)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        rec = self.records[trial.trial_id]
        if result.get("node") and result["node"] not in rec.nodes:
            rec.nodes.append(result["node"])
            nodes = ",".join(rec.nodes)
            self._send(f"trial {rec.trial_id}: its node",
                       lambda: self.client.set_tag(rec.run_id, NODES_TAG, nodes))
        start = int(result.get("start_epoch", 0))
        if start and start not in rec.resumed_from:  # restarted from a checkpoint of this epoch
            rec.resumed_from.append(start)
            resumed = ",".join(map(str, rec.resumed_from))
            self._send(f"trial {rec.trial_id}: its restart",
                       lambda: self.client.set_tag(rec.run_id, RESUMED_TAG, resumed))
        if result.get("infeasible") or result.get("failed"):
            kind = "infeasible" if result.get("infeasible") else "failed"
            rec.outcome = f"{kind}: {result.get('reason', '')}"
            return
        epoch = int(result["epoch"])
        if epoch in rec.logged:  # replayed after a resume from an older checkpoint
            rec.new_best = False
            return
        rec.logged.add(epoch)
        rec.epochs, rec.n_params, rec.mmacs = epoch, int(result["n_params"]), float(result["mmacs"])
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(result[k]), now, epoch) for k in EPOCH_METRICS if k in result]
        self._send(f"trial {rec.trial_id}: epoch {epoch} metrics",
                   lambda: self.client.log_batch(rec.run_id, metrics=metrics))
        rec.history.append({k: float(result[k]) for k in EPOCH_METRICS if k in result})
        rec.new_best = self._better(float(result[self.metric]), rec.best)
        if rec.new_best:
            rec.best, rec.best_epoch = float(result[self.metric]), epoch
        print(f"[searcher] trial {rec.trial_id} epoch {epoch}/{self.space.settings.epochs}: "
              f"{self.metric}={float(result[self.metric]):.4f} train_loss={result['train_loss']:.3f} "
              f"({result['images_per_s']:.0f} img/s)", flush=True)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # Tune reports the result before saving its checkpoint, so the flag is this epoch's.
        # The best checkpoint goes to MLflow at once: it survives the driver, a node and Tune's
        # own clean-up of old checkpoints.
        rec = self.records[trial.trial_id]
        if rec.new_best:
            def upload() -> None:
                with checkpoint.as_directory() as directory:
                    self.client.log_artifacts(rec.run_id, directory, "checkpoint")
            self._send(f"trial {rec.trial_id}: its best checkpoint (epoch {rec.best_epoch})", upload)

    def _finish(self, trial, outcome: str, status: str) -> None:
        rec = self.records.get(trial.trial_id)
        if rec is None or rec.finished_at is not None:  # a resume can replay a trial's end
            return
        rec.outcome, rec.finished_at = outcome, time.time()
        tags = [RunTag(OUTCOME_TAG, outcome.split(":")[0]), RunTag("searcher.outcome_detail", outcome)]
        metrics = [Metric("epochs_run", rec.epochs, int(time.time() * 1000), 0)]
        if rec.best is not None:
            metrics += [Metric(best_key(self.metric), rec.best, int(time.time() * 1000), 0),
                        Metric("best_epoch", rec.best_epoch, int(time.time() * 1000), 0)]
        if rec.n_params is not None:
            metrics.append(Metric("n_params", rec.n_params, int(time.time() * 1000), 0))
        def close() -> None:
            self.client.log_batch(rec.run_id, metrics=metrics, tags=tags)
            self.client.set_terminated(rec.run_id, status)
        self._send(f"trial {rec.trial_id}: its outcome", close)
        print(_progress_line(rec, self.metric, len(self.records)), flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            return
        if rec.outcome.startswith("infeasible"):
            self._finish(trial, rec.outcome, "FINISHED")
        elif rec.outcome.startswith("failed"):
            self._finish(trial, rec.outcome, "FAILED")
        elif rec.epochs < self.space.settings.epochs:
            self._finish(trial, f"stopped early: at epoch {rec.epochs}", "FINISHED")
        else:
            self._finish(trial, "completed", "FINISHED")

    def on_experiment_end(self, trials, **info) -> None:
        # Trials still running when the time budget ran out get no completion call of their own.
        by_id = {t.trial_id: t for t in trials}
        for rec in self.records.values():
            if rec.finished_at is None and rec.trial_id in by_id:
                self._finish(by_id[rec.trial_id],
                             f"stopped early: by the time budget at epoch {rec.epochs}", "FINISHED")
        self.flush()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = trial.get_error()
        reason = str(error).strip().splitlines()[-1] if error else "unknown error"
        self._finish(trial, f"failed: {reason[:400]}", "FAILED")


_ACTIVE: MLflowTrialLogger | None = None


def active_logger() -> MLflowTrialLogger | None:
    """The logger of the search running (or last run) in this process.

    On a resume Tune restores its own pickled copy of the callback, so the driver finds the
    records here rather than on the object it created.
    """
    return _ACTIVE


def _param(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _records_from_mlflow(client: MlflowClient, parent_run_id: str, metric: str,
                         mode: str) -> dict[str, TrialRecord]:
    """The trials a search has logged so far, as records, so a resumed search goes on with them."""
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and "
                              f"tags.`{ROLE_TAG}` = 'trial'", order_by=["attributes.start_time ASC"])
    records = {}
    for run in runs:
        tags = run.data.tags
        rec = TrialRecord(tags[TRIAL_ID_TAG], run.info.run_id,
                          {k: _param(v) for k, v in run.data.params.items()}, tags.get(BASELINE_TAG),
                          started_at=run.info.start_time / 1000)
        by_step: dict[int, dict[str, float]] = {}
        for key in EPOCH_METRICS:
            for m in client.get_metric_history(run.info.run_id, key):
                by_step.setdefault(m.step, {})[key] = m.value
        rec.history = [by_step[step] for step in sorted(by_step)]
        rec.logged = set(by_step)
        rec.epochs = max(by_step, default=0)
        for step in sorted(by_step):
            value = by_step[step].get(metric)
            if value is not None and (rec.best is None or (value > rec.best if mode == "max"
                                                           else value < rec.best)):
                rec.best, rec.best_epoch = value, step
        rec.n_params = int(run.data.metrics["n_params"]) if "n_params" in run.data.metrics else None
        rec.nodes = [n for n in tags.get(NODES_TAG, "").split(",") if n]
        outcome = tags.get("searcher.outcome_detail", tags.get(OUTCOME_TAG, "running"))
        rec.outcome = outcome
        if run.info.end_time:
            rec.finished_at = run.info.end_time / 1000
        records[rec.trial_id] = rec
    return records


def _progress_line(rec: TrialRecord, metric: str, started: int) -> str:
    value = f"{metric}={rec.best:.4f}" if rec.best is not None else f"{metric}=-"
    name = f" ({rec.baseline})" if rec.baseline else ""
    return f"[searcher] trial {rec.trial_id}{name} done: {rec.outcome}, best {value} ({started} trials started)"


# ----------------------------------------------------------------------------- end of a search

def finish_search_run(client: MlflowClient, run_id: str, leaderboard: list[dict[str, Any]],
                      leaderboard_text: str, study: Any, metric: str, wall_time_s: float,
                      status: str = "FINISHED") -> None:
    client.log_dict(run_id, leaderboard, "leaderboard.json")
    client.log_text(run_id, leaderboard_text, "leaderboard.txt")
    scored = [row for row in leaderboard if row.get(metric) is not None]
    metrics = [Metric("trials", len(leaderboard), int(time.time() * 1000), 0),
               Metric("wall_time_s", wall_time_s, int(time.time() * 1000), 0)]
    if scored:
        metrics.append(Metric(best_key(metric), scored[0][metric], int(time.time() * 1000), 0))
    client.log_batch(run_id, metrics=metrics)
    _log_optuna_plots(client, run_id, study)
    client.set_terminated(run_id, status)


def _log_optuna_plots(client: MlflowClient, run_id: str, study: Any) -> None:
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plots = {"optimization_history": vis.plot_optimization_history,
             "param_importances": vis.plot_param_importances,
             "parallel_coordinate": vis.plot_parallel_coordinate}
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                ax = plot(study)
            figure = (ax[0] if hasattr(ax, "__len__") else ax).figure
            figure.set_size_inches(10, 6)
            figure.tight_layout()
            client.log_figure(run_id, figure, f"plots/{name}.png")
            plt.close(figure)
        except Exception as exc:  # too few finished trials for a plot is normal in a tiny search
            client.log_text(run_id, f"{name}: not drawn ({type(exc).__name__}: {exc})\n",
                            f"plots/{name}.txt")

