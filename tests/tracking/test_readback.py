"""A search past 1,000 trials: every readback of its runs pages past MLflow's first 1,000
(`search_runs`' default page), in a real sqlite store with 1,001 trial runs."""
from __future__ import annotations

import time

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from searcher.tracking import store as tracking
from searcher.tracking.outbox import OUTBOX_FILE, Outbox
from searcher.tracking.readback import all_runs, ranked_trials, trial_records, trial_runs
from searcher.tracking.tags import ROLE_TAG, TRIAL_ID_TAG
from searcher.tune.trial_logger import MLflowTrialLogger
from searcher.tune.warm_start import _search_runs

pytestmark = pytest.mark.slow  # a store of 1,001 trial runs

TRIALS = 1_001  # one past search_runs' default page


class Store:
    uri: str
    parent: object  # the search's parent run
    last: str  # the run of the trial that started last: on no first page


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    s = Store()
    s.uri = f"sqlite:///{tmp_path_factory.mktemp('many') / 'mlflow.db'}"
    client = MlflowClient(s.uri)
    exp = tracking.experiment_id(client, "many")  # artifacts beside the database
    parent = client.create_run(exp, tags={ROLE_TAG: "search", "searcher.metric": "val_acc",
                                          "searcher.mode": "max"}).info.run_id
    start = int(time.time() * 1000)
    for i in range(TRIALS):  # started in order, each trial worse than the one before
        run = client.create_run(exp, start_time=start + i, tags={
            MLFLOW_PARENT_RUN_ID: parent, ROLE_TAG: "trial", TRIAL_ID_TAG: f"t{i:04d}",
            "searcher.outcome": "completed"}).info.run_id
        client.log_batch(run, metrics=[Metric("best_val_acc", 1.0 - i / TRIALS, start, 0)])
    s.last = run
    searches = tracking.experiment_id(client, "many-searches")
    for i in range(TRIALS):
        client.create_run(searches, start_time=start + i, tags={ROLE_TAG: "search"})
    s.parent = client.get_run(parent)
    return s


def test_a_resumed_search_reads_back_every_trial(store):
    client = MlflowClient(store.uri)
    records = trial_records(client, store.parent.info.run_id, "val_acc", "max")
    assert len(records) == TRIALS and records["t1000"].run_id == store.last


def test_warm_start_reads_every_trial_and_every_search(store):
    client = MlflowClient(store.uri)
    assert len(trial_runs(client, store.parent)) == TRIALS
    assert len(_search_runs(client, None, "many-searches")) == TRIALS


def test_promotion_ranks_every_trial(store, tmp_path):
    # Only the worst trial, the 1,001st in rank, kept a checkpoint.
    client = MlflowClient(store.uri)
    (tmp_path / "model.pt").write_bytes(b"weights")
    client.log_artifact(store.last, str(tmp_path / "model.pt"), "checkpoint")
    (best,) = ranked_trials(client, store.parent, limit=1)
    assert best.info.run_id == store.last


def test_a_write_owed_to_the_last_trial_lands_on_its_run_and_makes_no_second_run(store,
                                                                                tmp_path):
    # A driver killed with the last trial's epoch in its outbox; the resumed search sends it.
    outbox = Outbox(tmp_path / OUTBOX_FILE)
    outbox.append({"op": "metrics", "trial": "t1000", "what": "t1000: epoch 1 metrics",
                   "epoch": 1, "metrics": [("val_acc", 0.5, 0, 1)]})
    outbox.close()
    logger = MLflowTrialLogger(store.uri, store.parent.info.run_id, space=_Space(),
                               state_folder=tmp_path)
    logger.setup()
    assert logger.unlogged == []
    client = MlflowClient(store.uri)
    assert [m.value for m in client.get_metric_history(store.last, "val_acc")] == [0.5]
    assert len(logger.records) == TRIALS
    assert len(all_runs(client, [store.parent.info.experiment_id],
                                 f"tags.`{TRIAL_ID_TAG}` = 't1000'")) == 1
    logger._writer.stop()


class _Space:  # what the logger reads of a space before any trial starts
    class settings:
        metric, mode = "val_acc", "max"


@pytest.mark.parametrize("text", ["{[]: 1}", "{{}: 1}", "[" * 5000 + "]" * 5000,
                                  "-" * 100_000 + "1", "x" * 10_000, "1" * 10_000])
def test_a_stored_parameter_that_is_no_literal_reads_back_as_the_string_it_is(text):
    """A space's choices are any strings: reading one back never raises, whatever it holds."""
    from searcher.tracking.readback import param_value
    assert param_value(text) == text
