"""MLflow: the store, and a parent run per search with its provenance, leaderboard and plots.

The child runs, one per trial, are written by the Tune callback in `trial_logger`.
"""
from __future__ import annotations

import getpass
import logging
import os
import platform
import subprocess
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow
import yaml
from mlflow.data import from_numpy
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT, MLFLOW_RUN_NOTE,
                                      MLFLOW_USER)

from searcher.errors import UserError
from searcher.redaction import redact
from searcher.spec.space import Space
from searcher.tracking.pareto import log_front
from searcher.tracking.tags import (
    METRIC_TAG,
    MODE_TAG,
    ROLE_TAG,
    SAMPLER_TAG,
    SPACE_FILE_TAG,
    WARM_START_FILE,
    WARM_START_TAG,
    best_key,
)
from searcher.training.data import SearchData

PACKAGES = ("searcher", "torch", "torchvision", "ray", "optuna", "mlflow", "numpy")


def default_tracking_uri() -> str:
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


# `ray up` leaves this file in the head's home: a driver that finds it runs on a cluster's head.
RAY_UP_CONFIG = Path("~/ray_bootstrap_config.yaml")
MLFLOW_PORT = 5000  # where cluster/start-mlflow.sh serves MLflow on a cluster's head


def describe_store(uri: str | None) -> str:
    """Where the search logs, for its first lines: a local store is named as such."""
    uri = resolve_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)  # printed without any user or password it may carry
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return f"tracking server {redact(parts._replace(netloc=host).geturl())}"
    return f"local store {redact(uri)} (a server: --tracking-uri or MLFLOW_TRACKING_URI)"


def how_to_browse(uri: str, experiment_id: str, run_id: str, experiment: str,
                  data_dir: str) -> list[str]:
    """The search's closing lines: how the person who started it opens its runs and promotes,
    from where they sit (on a cluster, their own machine, through an SSH forward)."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    uri = redact(uri)  # printed: a password it carries is the user's to give again
    head_config = RAY_UP_CONFIG.expanduser()
    if uri.startswith("sqlite:"):
        return [f"Browse:   searcher ui --tracking-uri {uri}, then open "
                f"http://127.0.0.1:{MLFLOW_PORT}/{page}",
                f"Promote:  searcher promote --experiment {experiment} "
                f"--tracking-uri {uri} --data-dir {data_dir}"]
    if urlsplit(uri).hostname in ("127.0.0.1", "localhost") and head_config.is_file():
        name = yaml.safe_load(head_config.read_text()).get("cluster_name", "")
        local = f"http://127.0.0.1:{MLFLOW_PORT}"
        return [f"Promote:  on your machine, with the forward up: MLFLOW_TRACKING_URI={local} "
                f"searcher promote --experiment {experiment} --data-dir DATA",
                f"Browse:   on your machine (cluster '{name}'): ray dashboard --port {MLFLOW_PORT} "
                f"--remote-port {urlsplit(uri).port or MLFLOW_PORT} CLUSTER.yaml (left running), "
                f"then open {local}/{page}"]
    return [f"Browse:   open {uri.rstrip('/')}/{page}",
            f"Promote:  searcher promote --experiment {experiment} --tracking-uri {uri} "
            f"--data-dir {data_dir}"]


def check_server(uri: str | None) -> None:
    """Fail at once, with one line, if `uri` names a tracking server that does not answer."""
    uri = resolve_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        import requests
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except Exception as exc:
            raise UserError(f"cannot reach the MLflow tracking server at {redact(uri)} "
                            f"({type(exc).__name__}); "
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
        raise UserError(f"cannot open the MLflow store at {redact(uri)}: {exc}") from None
    return client


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:"):  # keep artifacts beside the local database
        database = Path(client.tracking_uri.removeprefix("sqlite:///")).resolve()  # may be relative
        location = (database.parent / "mlartifacts").as_uri()
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


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each package ("not installed" where it is not)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            **package_versions(PACKAGES)}


# ----------------------------------------------------------------------------- datasets

def data_digests(data: SearchData) -> dict[str, str]:
    """The digest of each split's images and labels, by MLflow dataset context."""
    return {"train": data.train.digest, "validation": data.val.digest}


def logged_digests(run: Any) -> dict[str, str]:
    """`data_digests` as the run `run` logged them with its datasets (none: {})."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return {tag.value: i.dataset.digest for i in inputs for tag in i.tags
            if tag.key == MLFLOW_DATASET_CONTEXT}


def dataset_inputs(space: Space, data: SearchData) -> list[DatasetInput]:
    """The search's train and validation splits as MLflow dataset inputs (name, digest, source,
    shapes): what `mlflow.log_input` would log. Computed once, in the driver; trial runs copy
    them from the parent run."""
    s = space.settings
    source = str(Path(s.resolved_data_dir()).resolve())
    name = s.dataset if s.dataset == "cifar10" else Path(source).name
    inputs = []
    for context, split in (("train", data.train), ("validation", data.val)):
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice (for "" and "file") and then warns
            # that a path could be either: the same class.
            warnings.simplefilter("ignore", UserWarning)
            ds = from_numpy(split.x, source=source, targets=split.y, name=name,
                            digest=split.digest)
        inputs.append(DatasetInput(Dataset(**ds.to_dict()),
                                   [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs


def run_user(settings) -> str:
    """The user a search's runs are logged as (the MLflow UI's "User"): who submitted it to a
    cluster (not the account the head's driver logs with), else who runs it here."""
    if settings.submitter:
        return settings.submitter
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (some containers)
        return "unknown"


def start_search_run(client: MlflowClient, space: Space, data_summary: dict[str, Any],
                     warm_start: dict[str, Any] | None = None, *,
                     data: SearchData | None = None) -> str:
    """Create the search's parent run and log what it takes to reproduce it, including the
    sampler, the earlier searches it learnt from and, given `data`, its datasets and the images
    that could not be read."""
    s = space.settings
    commit = _git_commit(Path(__file__).resolve().parent)
    run = client.create_run(
        experiment_id(client, space.name),
        run_name=f"search {time.strftime('%Y-%m-%d %H:%M:%S')}",
        tags={ROLE_TAG: "search", MLFLOW_GIT_COMMIT: commit,
              SPACE_FILE_TAG: str(space.path), METRIC_TAG: s.metric,
              MODE_TAG: s.mode, SAMPLER_TAG: s.sampler,
              MLFLOW_RUN_NOTE: f"Search over {space.path.name} ({s.sampler} sampler)",
              MLFLOW_USER: run_user(s)})
    run_id = run.info.run_id
    # the settings as logged: a URL's credentials masked (searcher.redaction)
    settings = {k: redact(v) if isinstance(v, str) and "://" in v else v
                for k, v in s.to_dict().items()}
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(settings.items())])
    client.log_text(run_id, space.text, f"space/{space.path.name}")
    client.log_dict(run_id, settings, "settings.json")
    client.log_dict(run_id, {**_versions(), "git_commit": commit}, "versions.json")
    client.log_dict(run_id, data_summary, "data.json")
    if data is not None:
        client.log_inputs(run_id, datasets=dataset_inputs(space, data))
        client.log_batch(run_id, metrics=[
            Metric("skipped_images", len(data.skipped), int(time.time() * 1000), 0)])
        if data.skipped:
            client.log_text(run_id, "\n".join(data.skipped) + "\n", "skipped_images.txt")
    if warm_start is not None:
        client.log_dict(run_id, warm_start, WARM_START_FILE)
        client.set_tag(run_id, WARM_START_TAG, ",".join(warm_start["sources"]))
        client.log_batch(run_id, metrics=[
            Metric("warm_start_trials", warm_start["trials"], int(time.time() * 1000), 0),
            Metric("warm_start_skipped", sum(warm_start["skipped"].values()),
                   int(time.time() * 1000), 0)])
    return run_id


# ----------------------------------------------------------------------------- end of a search

def finish_search_run(client: MlflowClient, run_id: str, leaderboard: list[dict[str, Any]],
                      leaderboard_text: str, study: Any, metric: str, wall_time_s: float,
                      proposals: int = 0, infeasible: int = 0, status: str = "FINISHED",
                      front: dict[str, Any] | None = None) -> None:
    """The search's summary on its parent run, which it closes: the leaderboard, its metrics, the
    Pareto front (`front`, from searcher.tracking.pareto.front_summary) and Optuna's plots."""
    client.log_dict(run_id, leaderboard, "leaderboard.json")
    client.log_text(run_id, leaderboard_text, "leaderboard.txt")
    scored = [row for row in leaderboard if row.get(metric) is not None]
    metrics = [Metric("trials", len(leaderboard), int(time.time() * 1000), 0),
               Metric("wall_time_s", wall_time_s, int(time.time() * 1000), 0),
               Metric("proposals", proposals, int(time.time() * 1000), 0),
               Metric("infeasible_proposals", infeasible, int(time.time() * 1000), 0)]
    if scored:
        metrics.append(Metric(best_key(metric), scored[0][metric], int(time.time() * 1000), 0))
    client.log_batch(run_id, metrics=metrics)
    if front is not None:
        log_front(client, run_id, front)
    _log_optuna_plots(client, run_id, study)
    client.set_terminated(run_id, status)


def _log_optuna_plots(client: MlflowClient, run_id: str, study: Any) -> None:
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plots = {"optimization_history": vis.plot_optimization_history,
             "intermediate_values": vis.plot_intermediate_values,  # every trial's epochs
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

