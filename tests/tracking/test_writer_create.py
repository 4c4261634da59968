"""The writer makes a trial's run once: a run whose creation reached MLflow but whose answer did
not is found by its trial id under the search's parent and used (a real sqlite store)."""
from __future__ import annotations

import pytest
import requests
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from searcher.tracking.outbox import OUTBOX_FILE, Outbox
from searcher.tracking.tags import TRIAL_ID_TAG
from searcher.tracking.writer import Writer

pytestmark = pytest.mark.slow  # a real MLflow store per test (its schema takes seconds)


@pytest.fixture()
def parent(tracking_uri):
    client = MlflowClient(tracking_uri)
    return client.create_run(client.create_experiment("w")).info.run_id


def trial_ops(parent: str, trial: str) -> list[dict]:
    """A trial's writes as the trial logger describes them: its run, an epoch, its end."""
    return [dict(op, seq=i) for i, op in enumerate([
        {"op": "create", "trial": trial, "what": f"{trial} run", "name": trial,
         "tags": {MLFLOW_PARENT_RUN_ID: parent, TRIAL_ID_TAG: trial}, "params": [("lr", "0.1")]},
        {"op": "metrics", "trial": trial, "what": f"{trial} epoch 1", "epoch": 1,
         "metrics": [("val_acc", 0.5, 0, 1)]},
        {"op": "close", "trial": trial, "what": f"{trial} outcome", "status": "FINISHED",
         "metrics": [("epochs_run", 1, 0, 0)], "tags": {"searcher.outcome": "completed"}}])]


def runs_of(tracking_uri: str, parent: str, trial: str) -> list:
    client = MlflowClient(tracking_uri)
    return client.search_runs([client.get_run(parent).info.experiment_id],
                              f"tags.`{TRIAL_ID_TAG}` = '{trial}'")


def assert_one_complete_run(tracking_uri: str, parent: str, trial: str) -> str:
    (run,) = runs_of(tracking_uri, parent, trial)  # one run, not two
    assert run.data.params == {"lr": "0.1"} and run.info.status == "FINISHED"
    assert run.data.metrics == {"val_acc": 0.5, "epochs_run": 1}
    return run.info.run_id


def test_a_run_made_behind_the_writers_back_is_the_one_it_writes_to(tracking_uri, parent,
                                                                   tmp_path):
    # The first POST made the run, its answer was lost; a later writer creates the trial again.
    client = MlflowClient(tracking_uri)
    made = client.create_run(client.get_run(parent).info.experiment_id, run_name="a",
                             tags={MLFLOW_PARENT_RUN_ID: parent, TRIAL_ID_TAG: "a"}).info.run_id
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    assert writer._send(trial_ops(parent, "a")) == []
    assert writer.run_ids["a"] == made
    assert assert_one_complete_run(tracking_uri, parent, "a") == made


def test_a_creation_whose_answer_was_lost_is_not_made_again_on_the_retry(tracking_uri, parent,
                                                                         tmp_path):
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    create = writer.client.create_run

    def made_but_unanswered(*args, **kwargs):
        create(*args, **kwargs)
        raise requests.exceptions.ReadTimeout("the answer did not come back in time")
    writer.client.create_run = made_but_unanswered
    left = writer._send(trial_ops(parent, "a"))
    assert [op["op"] for op in left] == ["create", "metrics", "close"]  # kept for the retry
    writer.client.create_run = create
    assert writer._send(left) == []
    assert assert_one_complete_run(tracking_uri, parent, "a") == writer.run_ids["a"]


def test_another_search_s_run_of_the_same_trial_id_is_not_taken(tracking_uri, parent, tmp_path):
    client = MlflowClient(tracking_uri)
    other = client.create_run(client.get_run(parent).info.experiment_id).info.run_id
    client.create_run(client.get_run(parent).info.experiment_id,
                      tags={MLFLOW_PARENT_RUN_ID: other, TRIAL_ID_TAG: "a"})
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    assert writer._send(trial_ops(parent, "a")) == []
    assert client.get_run(writer.run_ids["a"]).data.tags[MLFLOW_PARENT_RUN_ID] == parent
    assert len(runs_of(tracking_uri, parent, "a")) == 2  # theirs and ours
