"""What MLflow records on a search's parent run and on each trial's run: every name, and what it
holds.

docs/mlflow.md's tables are generated from these at build time (docs/hooks/mlflow_records.py),
and tests/tracking/test_recorded.py logs a search and a trial into a real store through the code
that writes them, failing when a run holds a name declared nowhere here or lacks one declared.
A name in <angle brackets> stands for any value there: `best_<metric>` is `best_val_acc` when
the search optimises val_acc. A kind whose names are not fixed (the parameters, the datasets) is
one sentence instead of a table of names.
"""
from __future__ import annotations

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_RUN_NOTE, MLFLOW_USER

from searcher.tracking.tags import (
    BASELINE_TAG,
    CANCELLED_TAG,
    CPUS_TAG,
    EPOCH_METRICS,
    GPUS_TAG,
    METRIC_TAG,
    MODE_TAG,
    NODES_TAG,
    OUTCOME_DETAIL_TAG,
    OUTCOME_TAG,
    PARENT_TAG,
    RESUMED_TAG,
    ROLE_TAG,
    SAMPLER_TAG,
    SPACE_FILE_TAG,
    SPEED_METRICS,
    TRIAL_ID_TAG,
    WARM_START_FILE,
    WARM_START_TAG,
    best_key,
)

Kinds = dict[str, "dict[str, str] | str"]  # kind -> {name: what it holds}, or what they hold

BEST = best_key("<metric>")  # the summary promotion ranks trials by

SEARCH_RUN: Kinds = {
    "parameters": "every setting, as resolved (a URL's password masked)",
    "tags": {
        ROLE_TAG: "`search`",
        SPACE_FILE_TAG: "the space file's path",
        METRIC_TAG: "the metric the search optimises",
        MODE_TAG: "its direction, `max` or `min`",
        SAMPLER_TAG: "the sampler, `tpe` or `random`",
        MLFLOW_GIT_COMMIT: "the git commit of the code (`-dirty` when the tree has changes)",
        MLFLOW_RUN_NOTE: "which space file and sampler, as the run's note",
        WARM_START_TAG: "warm-started: the runs of the searches it learnt from",
        MLFLOW_USER: "who submitted it (`searcher submit`): the UI's User column",
        CANCELLED_TAG: "cancelled (`searcher cancel`): `cancelled by NAME`",
    },
    "metrics at the start": {
        "skipped_images": "unreadable images left out of the data",
        "warm_start_trials": "warm-started: the earlier trials it learnt from",
        "warm_start_skipped": "warm-started: the earlier trials it could not use",
    },
    "metrics at the end": {
        "trials": "the trials on the leaderboard",
        "wall_time_s": "the search's wall time, seconds",
        "proposals": "the sampler's proposals, feasible or not",
        "infeasible_proposals": "those over a limit, never trained",
        BEST: "the best trial's metric",
        "hypervolume": "what the Pareto front dominates, up to the reference point",
        "front_size": "the trials on the front",
    },
    "files": {
        "space/<file>.py": "the space file's text",
        "settings.json": "the settings, as the parameters",
        "versions.json": "Python, the platform, the versions of searcher, torch, torchvision, "
                         "ray, optuna, mlflow and numpy, and the git commit",
        "data.json": "dataset, folder, classes, split sizes, image shape, skipped images",
        "skipped_images.txt": "the unreadable images, if any",
        WARM_START_FILE: "warm-started: which searches, how many trials, how many skipped and "
                         "why, which baselines they had measured already",
    },
    "files at the end": {
        "leaderboard.txt": "every trial, best first (`^` marks the Pareto front, `lat_ms` is "
                           "the median latency)",
        "leaderboard.json": "the same, as data (`\"front\": true` on the front)",
        "pareto.json": "the front: objectives, directions, reference, hypervolume, bounds, and "
                       "every trial's point",
        "pareto.txt": "the closing line, then the front's trials as a table",
        "plots/pareto.png": "the metric against `latency_ms` and against `n_params`",
        "plots/optimization_history.png": "Optuna's plot of the metric over the trials",
        "plots/intermediate_values.png": "every trial's epochs",
        "plots/param_importances.png": "Optuna's parameter importances",
        "plots/parallel_coordinate.png": "Optuna's parallel-coordinate plot",
        "plots/<plot>.txt": "a plot that cannot be drawn (too few trials): why",
    },
    "datasets": "the train and validation splits, with MLflow's dataset tracking: name, source "
                "folder, shapes, and a digest of every image and label",
}

TRIAL_RUN: Kinds = {
    "parameters": "every parameter of the trial, as the space proposed it",
    "tags": {
        ROLE_TAG: "`trial`",
        PARENT_TAG: "the search's run, which the trial's is nested under",
        TRIAL_ID_TAG: "Tune's trial id",
        OUTCOME_TAG: "`running`, `completed`, `stopped early`, `infeasible`, `failed` or `lost`",
        OUTCOME_DETAIL_TAG: "the outcome with its reason",
        BASELINE_TAG: "a baseline's name, when the trial is one",
        CPUS_TAG: "the CPUs Tune reserved for it",
        GPUS_TAG: "the GPU share Tune reserved for it",
        NODES_TAG: "the Ray nodes it trained on",
        RESUMED_TAG: "the checkpoint epochs it restarted from, if any",
        MLFLOW_USER: "who submitted the search, as on its run",
    },
    "metrics per epoch (step = epoch)": EPOCH_METRICS,
    "metrics at the end": {
        "epochs_run": "the epochs it trained",
        BEST: "its best epoch's metric: what promotion ranks by",
        "best_epoch": "that epoch",
        "n_params": "the net's parameters",
        "mmacs": "its million multiply-adds per image",
        **SPEED_METRICS,
    },
    "files": {
        "checkpoint/checkpoint.pt": "its best epoch's checkpoint, sent as soon as it is the best",
    },
    "datasets": "the same train and validation splits as the search's run",
}
