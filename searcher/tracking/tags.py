"""The names searcher gives things in MLflow: its tags, and the metrics promotion ranks by.

Every module that writes or reads one of these takes the name from here, so a name is written
once and a query cannot drift from the write it looks for.
"""
from __future__ import annotations

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

PARENT_TAG = MLFLOW_PARENT_RUN_ID  # MLflow's own: what nests a child run under its parent
ROLE_TAG = "searcher.role"  # "search" on parent runs, "trial" on children, "promotion"

# On a search's parent run
METRIC_TAG = "searcher.metric"  # the metric the search optimises ...
MODE_TAG = "searcher.mode"  # ... and its direction, "max" or "min"
SAMPLER_TAG = "searcher.sampler"
SPACE_FILE_TAG = "searcher.space_file"
WARM_START_TAG = "searcher.warm_start_runs"  # the searches a warm-started one learnt from
WARM_START_FILE = "warm_start.json"  # ... and its artifact: WarmStart.summary()

# On a trial's run
TRIAL_ID_TAG = "searcher.trial_id"  # Tune's trial id: a trial has one run, found by this tag
BASELINE_TAG = "searcher.baseline"  # the hand-made baseline's name, when the trial is one
OUTCOME_TAG = "searcher.outcome"  # "completed", "stopped early", "failed", ...
OUTCOME_DETAIL_TAG = "searcher.outcome_detail"  # ... with why, in a few words
NODES_TAG = "searcher.nodes"  # the Ray nodes the trial trained on
RESUMED_TAG = "searcher.resumed_from_epoch"
CANCELLED_TAG = "searcher.cancelled"  # on a search's run: "cancelled by NAME" (searcher cancel)
GPUS_TAG = "searcher.gpus_per_trial"  # the GPU share Tune reserved for the trial
CPUS_TAG = "searcher.cpus_per_trial"
# What a trial measures of its net before it trains (searcher.training.latency), logged once on
# its run beside n_params and mmacs: the MLflow UI charts them against the metric. Name -> what
# it holds: the logger logs these names, the docs' tables (searcher.tracking.recorded) say these.
SPEED_METRICS = {
    "latency_ms": "median ms of a forward pass of `latency_batch` images, timed before the trial "
                  "trains, on its own device and threads",
    "latency_p95_ms": "the 95th percentile of the same passes",
    "throughput_ips": "images per second at `throughput_batch` images a pass (not measured when "
                      "the latency is over `max_latency_ms` already)",
}
# What a trial reports each epoch that its run records, at step = the epoch.
# The step of a trial's first look (scored after part of its first epoch: settings.first_look).
# It is in MLflow with the epochs, but never a trial's result: not its best, nor what it ranks by.
FIRST_LOOK = 0


def stopped_at(epochs: int) -> str:
    """The outcome of a trial that ASHA stopped after `epochs` whole epochs (0: at its look)."""
    return "stopped early: at its first look" if epochs == FIRST_LOOK else \
        f"stopped early: at epoch {epochs}"


EPOCH_METRICS = {
    "val_acc": "accuracy on the validation split",
    "val_loss": "mean cross-entropy on the validation split",
    "train_loss": "mean training loss over the epoch",
    "epoch_time_s": "seconds the epoch's training took",
    "eval_time_s": "seconds its validation took",
    "images_per_s": "training images per second",
    "rss_mb": "the trial process's resident memory, MiB",
    "private_mb": "the part of it no other process shares, MiB",
    "dataset_shared": "1: the dataset is mapped from Ray's object store, not copied",
}

# On confirmation retrains and promotion runs
SOURCE_TRIAL_TAG = "searcher.source_trial_run"  # the trial run a retrain or promotion came from
SOURCE_TRIAL_ID_TAG = "searcher.source_trial_id"
SOURCE_RUN_TAG = "searcher.source_run"  # the run whose checkpoint was promoted
SEED_TAG = "searcher.seed"


def best_key(metric: str) -> str:
    """The summary metric on each trial run that promotion ranks by."""
    return f"best_{metric}"


# The exported model's speed, timed by promotion as it will be served, on the registered version:
# Speed's field -> tag. Every champion carries its measured speed and where it was timed.
SPEED_TAGS = {"latency_ms": "searcher.latency_ms", "latency_p95_ms": "searcher.latency_p95_ms",
              "batch": "searcher.latency_batch", "throughput_ips": "searcher.throughput_ips",
              "throughput_batch": "searcher.throughput_batch",
              "device": "searcher.latency_device", "threads": "searcher.latency_threads"}


def trial_filter(parent_run_id: str, trial_id: str | None = None) -> str:
    """The search filter for a search's trial runs, or for the run of the trial `trial_id` (which
    its trial id names alone: a retrain's or promotion's run carries none)."""
    if trial_id:
        return f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_ID_TAG}` = '{trial_id}'"
    return f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{ROLE_TAG}` = 'trial'"


# On a registered version: the SHA-256 of each of the model's files (searcher.training.portable),
# recorded when it is registered and checked before a byte of a file is parsed. The registry
# keeps them in the tracking database, apart from the artifact store that holds the files.
DIGEST_TAG_PREFIX = "searcher.sha256."

