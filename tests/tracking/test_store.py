"""The search's MLflow runs: datasets, skipped images, trial run names (a real sqlite store)."""
from __future__ import annotations

import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SHARED_SAMPLES
from mlflow.tracking import MlflowClient
from ray.tune.execution.placement_groups import PlacementGroupFactory

from searcher.spec.space import load_space
from searcher.tracking import store as tracking
from searcher.training.data import SearchData, Split, load_search_data

pytestmark = pytest.mark.slow  # a real MLflow store per test (its schema takes seconds)

SPACE = textwrap.dedent('''
    def space(trial):
        trial.suggest_int("stages", 1, 2)
        trial.suggest_categorical("filters", [8, 16])
        return {"batch_norm": True, "head": "gap"}

    BASELINES = {"small": {"stages": 1, "filters": 8}}
''')


@pytest.fixture()
def space(tmp_path, tiny_cifar):
    path = tmp_path / "tiny.py"
    path.write_text(SPACE)
    return load_space(path, {"data_dir": str(tiny_cifar)})


def inputs_of(run):
    return {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}


def test_parent_run_logs_the_splits_as_datasets(space, tiny_cifar, tracking_uri):
    client = tracking.connect(tracking_uri)
    data = load_search_data("cifar10", tiny_cifar, 32, 0.1, 0)
    parent = client.get_run(tracking.start_search_run(client, space, {}, data=data))
    datasets = inputs_of(parent)
    assert set(datasets) == {"train", "validation"}
    assert {d.name for d in datasets.values()} == {"cifar10"}
    assert '"features_shape": [360, 3, 32, 32]' in datasets["train"].profile
    assert '"features_shape": [40, 3, 32, 32]' in datasets["validation"].profile
    assert str(tiny_cifar.resolve()) in datasets["train"].source
    # The digest covers every image: the same data gives the same digest, one changed pixel
    # (far past the first 10,000 values MLflow's own digest reads) another.
    again = tracking.dataset_inputs(space, load_search_data("cifar10", tiny_cifar, 32, 0.1, 0))
    assert again[0].dataset.digest == datasets["train"].digest
    x = data.train.x.copy()
    x[-1, -1, -1, -1] ^= 1
    changed = SearchData(Split(x, data.train.y), data.val, data.classes, data.mean, data.std)
    assert tracking.dataset_inputs(space, changed)[0].dataset.digest != datasets["train"].digest
    assert parent.data.metrics["skipped_images"] == 0
    assert "skipped_images.txt" not in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_skipped_images_are_listed_in_the_parent_run(space, tracking_uri):
    client = tracking.connect(tracking_uri)
    x = np.zeros((4, 3, 32, 32), np.uint8)
    y = np.array([0, 1, 0, 1])
    skipped = ("/data/pets/train/cats/666.jpg", "/data/pets/train/dogs/11702.jpg")
    data = SearchData(Split(x, y), Split(x, y), ["cats", "dogs"], [0.5] * 3, [0.2] * 3, skipped)
    run_id = tracking.start_search_run(client, space, {}, data=data)
    assert client.get_run(run_id).data.metrics["skipped_images"] == 2
    listed = client.download_artifacts(run_id, "skipped_images.txt")
    assert open(listed).read().split() == list(skipped)


def test_trial_runs_are_named_by_architecture_and_carry_the_datasets(space, tiny_cifar,
                                                                     tracking_uri):
    from searcher.tune.trial_logger import MLflowTrialLogger
    client = tracking.connect(tracking_uri)
    data = load_search_data("cifar10", tiny_cifar, 32, 0.1, 0)
    parent = tracking.start_search_run(client, space, {}, data=data)
    logger = MLflowTrialLogger(tracking_uri, parent, space)
    logger.setup()
    params = {"stages": 2, "filters": 16, "batch_norm": True, "head": "gap"}
    # Tune's Trial as the callback reads it: an id and the sampled config
    for trial_id, config in (("a1b2_00000", {"stages": 1, "filters": 8, "batch_norm": True,
                                             "head": "gap"}), ("a1b2_00001", params)):
        held = PlacementGroupFactory([{"CPU": 1, "GPU": 0.25}])  # what Tune reserved
        logger.on_trial_start(0, [], SimpleNamespace(trial_id=trial_id, config=config,
                                                     placement_group_factory=held))
    assert not logger.unlogged
    first, second = (client.get_run(logger.records[t].run_id) for t in ("a1b2_00000", "a1b2_00001"))
    assert first.info.run_name == "small: 8 bn gap sgd"
    assert second.info.run_name == "16-16 bn gap sgd"
    assert second.data.tags["searcher.trial_id"] == "a1b2_00001"
    tags = second.data.tags
    assert (tags["searcher.gpus_per_trial"], tags["searcher.cpus_per_trial"]) == ("0.25", "1")
    assert inputs_of(second) == inputs_of(client.get_run(parent))


def test_a_parameter_too_long_for_mlflow_is_said_in_one_line(space, tracking_uri, capsys):
    """A space's choice is any string: one past MLflow's 6,000 characters is cut by MLflow (a
    warning in its log); the search says so, naming the trial and the parameter."""
    from searcher.tune.trial_logger import MLflowTrialLogger
    client = tracking.connect(tracking_uri)
    parent = tracking.start_search_run(client, space, {})
    logger = MLflowTrialLogger(tracking_uri, parent, space)
    logger.setup()
    config = {"stages": 1, "filters": 8, "note": "x" * 10_000, "odd": "{[]: 1}"}
    logger.on_trial_start(0, [], SimpleNamespace(trial_id="a1b2_00000", config=config,
                                                 placement_group_factory=PlacementGroupFactory(
                                                     [{"CPU": 1}])))
    logger._writer.drain()
    said = [line for line in capsys.readouterr().out.splitlines() if "characters" in line]
    assert said == ["[searcher] trial a1b2_00000: parameter 'note' is 10,000 characters; MLflow "
                    "keeps its first 6,000 (the search's Optuna study keeps it whole)"]
    params = client.get_run(logger.records["a1b2_00000"].run_id).data.params
    assert params["note"] == "x" * 6000 and params["odd"] == "{[]: 1}"
    logger._writer.stop()


def test_a_real_search_logs_datasets_on_parent_and_children(finished_search):
    """The run's finished search (Ray, the CLI's own path), as the MLflow UI would show it."""
    client = MlflowClient(finished_search.uri)
    exp = client.get_experiment_by_name("tiny").experiment_id
    (parent,) = client.search_runs([exp], "tags.`searcher.role` = 'search'")
    parent = client.get_run(parent.info.run_id)  # get_run, which surely carries the inputs
    children = [client.get_run(r.info.run_id) for r in client.search_runs(
        [exp], "tags.`searcher.role` = 'trial'", order_by=["attributes.start_time ASC"])]
    assert len(children) == SHARED_SAMPLES
    datasets = inputs_of(parent)
    assert set(datasets) == {"train", "validation"} and datasets["train"].name == "cifar10"
    for child in children:
        assert inputs_of(child) == datasets
        assert child.data.tags["searcher.trial_id"] not in child.info.run_name
        assert child.info.run_name.endswith(" fc sgd") and len(child.info.run_name) <= 40
    # two trials start at once; the baseline is the one named after it
    baseline = [c for c in children if c.data.tags.get("searcher.baseline") == "tiny_tutorial"]
    assert [c.info.run_name for c in baseline] == ["tiny_tutorial: 8 fc sgd"]
