"""What MLflow records (searcher.tracking.recorded), which docs/mlflow.md's tables are: a search
and a trial logged by the real code into a real store hold exactly the names declared."""
from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from searcher.spec.space import load_space
from searcher.tracking.tags import CANCELLED_TAG
from searcher.tracking import store as tracking
from searcher.tracking.pareto import front_summary
from searcher.tracking.readback import TrialRecord
from searcher.tracking.recorded import SEARCH_RUN, TRIAL_RUN
from searcher.tracking.tags import EPOCH_METRICS, SPEED_METRICS
from searcher.training.data import SearchData, Split
from searcher.training.engine import TrainConfig, Trainer
from searcher.training.latency import measure_speed
from searcher.training.model import build_model

ROOT = Path(__file__).resolve().parents[2]

SPACE = textwrap.dedent('''
    def space(trial):
        trial.suggest_int("stages", 1, 2)
        trial.suggest_categorical("filters", [8, 16])
        return {"batch_norm": True, "head": "gap"}

    BASELINES = {"small": {"stages": 1, "filters": 8}}
''')


def names(kinds: dict, *which: str) -> set[str]:
    return {name for kind in which for name in kinds[kind]}


def unmatched(logged: set[str], declared: set[str], metric: str) -> tuple[set[str], set[str]]:
    """(logged but not declared, declared but not logged); `<x>` in a declared name is any value,
    except `<metric>`, which is the search's."""
    patterns = {d: re.compile(re.sub(r"<[^>]*>", "[^/]+", re.escape(d.replace("<metric>", metric)))
                              + "$") for d in declared}
    extra = {n for n in logged if not any(p.match(n) for p in patterns.values())}
    missing = {d for d, p in patterns.items() if not any(p.match(n) for n in logged)}
    return extra, missing


def test_a_trials_epoch_metrics_and_speed_are_declared():
    """What the trainable reports of the training loop and of the speed is what the logger logs."""
    model = build_model({"stages": [{"filters": 8}], "head": "gap"})
    x, y = torch.zeros((64, 3, 32, 32), dtype=torch.uint8), torch.arange(64) % 10
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=32), (x, y), (x, y), [0.5] * 3,
                      [0.2] * 3)
    reported = {*trainer.train_epoch(), *trainer.evaluate()}
    assert reported <= set(EPOCH_METRICS)
    speed = measure_speed(model, (3, 32, 32), 1, 4, "cpu", None)
    assert set(speed.metrics()) == set(SPEED_METRICS)
    assert set(SPEED_METRICS) <= names(TRIAL_RUN, "metrics at the end")


def test_the_docs_tables_list_every_declared_name():
    spec = importlib.util.spec_from_file_location(
        "mlflow_records", ROOT / "docs" / "hooks" / "mlflow_records.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    for kinds in (SEARCH_RUN, TRIAL_RUN):
        table = hook.table(kinds)
        for kind, declared in kinds.items():
            assert f"| {kind} |" in table
            for name in declared if isinstance(declared, dict) else ():
                assert f"| `{name}` |" in table


@pytest.mark.slow  # a real MLflow store (its schema takes seconds)
def test_the_runs_hold_exactly_the_declared_names(tmp_path, tiny_cifar, tracking_uri):
    from ray import tune

    from ray.tune.execution.placement_groups import PlacementGroupFactory

    from searcher.tune.trial_logger import MLflowTrialLogger

    path = tmp_path / "tiny.py"
    path.write_text(SPACE)
    space = load_space(path, {"data_dir": str(tiny_cifar), "submitter": "ann"})
    metric = space.settings.metric
    client = tracking.connect(tracking_uri)
    # every optional write: skipped images, a warm start, a Pareto front
    x = np.zeros((4, 3, 32, 32), np.uint8)
    data = SearchData(Split(x, np.array([0, 1, 0, 1])), Split(x[:2], np.array([0, 1])),
                      ["cats", "dogs"], [0.5] * 3, [0.2] * 3, ("/data/cats/1.jpg",))
    warm = {"sources": ["0123abcd"], "trials": 3, "skipped": {"other data": 1}}
    parent = tracking.start_search_run(client, space, {}, warm, data=data)

    logger = MLflowTrialLogger(tracking_uri, parent, space)
    logger.setup()
    config = {"stages": 1, "filters": 8, "batch_norm": True, "head": "gap"}  # the baseline
    trial = SimpleNamespace(trial_id="a1b2_00000", config=config,
                            placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))
    logger.on_trial_start(0, [], trial)
    # a result as the trainable reports it (searcher.tune.trainable._train), restarted at epoch 1
    result = {**{k: 0.5 for k in EPOCH_METRICS}, **{k: 1.0 for k in SPEED_METRICS}, "epoch": 2,
              "n_params": 1000, "mmacs": 1.5, "node": "node-1", "start_epoch": 1}
    logger.on_trial_result(0, [], trial, result)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"weights")
    logger.on_checkpoint(0, [], trial, tune.Checkpoint.from_directory(tmp_path / "ckpt"))
    logger.on_trial_complete(0, [], trial)
    logger.flush()
    assert not logger.unlogged
    rec = logger.records[trial.trial_id]

    study = optuna.create_study(direction="maximize")
    for i in range(4):
        t = study.ask({"filters": optuna.distributions.IntDistribution(8, 16)})
        t.report(0.1 * i, 0)
        study.tell(t, 0.1 * i)
    board = [{"trial": rec.trial_id, metric: rec.best}]
    tracking.finish_search_run(client, parent, board, "board\n", study, metric, 1.0,
                               front=front_summary([rec], space.settings, 2))
    logger.on_experiment_end([])

    bare = client.get_run(client.create_run(client.get_run(parent).info.experiment_id,
                                            run_name="bare").info.run_id)
    mlflows_own = set(bare.data.tags)  # what MLflow tags every run with, not searcher
    for run_id, kinds, params in ((parent, SEARCH_RUN, set(space.settings.to_dict())),
                                  (rec.run_id, TRIAL_RUN, set(config))):
        run = client.get_run(run_id)
        assert set(run.data.params) == params
        files = {f.path for d in ("", "space", "plots", "checkpoint")
                 for f in client.list_artifacts(run_id, d or None) if not f.is_dir}
        metrics = {k for k in kinds if k.startswith("metrics")}
        for logged, declared in ((set(run.data.tags) - mlflows_own, names(kinds, "tags")),
                                 (set(run.data.metrics), names(kinds, *metrics)),
                                 (files, names(kinds, *(k for k in kinds if "files" in k)))):
            extra, missing = unmatched(logged, declared, metric)
            # a plot that is drawn leaves no note saying why it is not; a search not cancelled
            # has no tag saying by whom
            assert (extra, missing - {"plots/<plot>.txt", CANCELLED_TAG}) == (set(), set())
        assert len(run.inputs.dataset_inputs) == 2  # the datasets row
