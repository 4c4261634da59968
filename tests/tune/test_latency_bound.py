"""A latency bound in a real search: a net too slow for it is timed, recorded and never trained,
and Optuna is told it was infeasible by how much; a fast net trains as usual."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from searcher.commands.run import main as run_main
from searcher.tune.state import load_study
from searcher.tune.study_searcher import INFEASIBLE_ATTR

pytestmark = pytest.mark.services

BOUND_MS = 5.0
# Both nets run first, as baselines. "slow": three 256-filter convs on the 32x32 map, about 1.2
# billion multiply-adds, tens of milliseconds a pass on a CPU core; "fast": one 4-filter conv,
# about a tenth of a millisecond. The size limits are opened so that only the latency bound
# can keep the slow one out.
SPACE = textwrap.dedent(f'''
    SETTINGS = {{"epochs": 2, "num_samples": 2, "grace_period": 1, "reduction_factor": 2,
                "max_mmacs": 100000, "max_params": 10000000, "max_latency_ms": {BOUND_MS},
                "seed": 0}}

    def space(trial):
        trial.suggest_int("stages", 1, 1)
        trial.suggest_categorical("stage1.filters", [4, 256])
        trial.suggest_categorical("stage1.convs", [1, 3])
        return {{"batch_size": 32, "head": "gap", "stage1.pool": "none"}}

    BASELINES = {{"fast": {{"stages": 1, "stage1.filters": 4, "stage1.convs": 1}},
                 "slow": {{"stages": 1, "stage1.filters": 256, "stage1.convs": 3}}}}
''')


def test_a_net_over_the_latency_bound_is_never_trained_and_optuna_is_told(local_ray, tiny_cifar,
                                                                         tmp_path):
    space = tmp_path / "bounded.py"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_main([str(space), "--data-dir", str(tiny_cifar), "--tracking-uri", uri,
                     "--storage-path", str(tmp_path / "ray")]) == 0

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("bounded")
    runs = {r.data.tags["searcher.baseline"]: r for r in client.search_runs(
        [experiment.experiment_id], "tags.`searcher.role` = 'trial'")}
    slow, fast = runs["slow"], runs["fast"]
    # timed and recorded, never trained
    assert slow.data.metrics["latency_ms"] > BOUND_MS
    assert slow.data.metrics["epochs_run"] == 0
    assert client.get_metric_history(slow.info.run_id, "val_acc") == []
    assert slow.data.tags["searcher.outcome"] == "infeasible"
    assert "over max_latency_ms=5" in slow.data.tags["searcher.outcome_detail"]
    assert not client.list_artifacts(slow.info.run_id, "checkpoint")
    # the fast one trained every epoch, its speed on its run
    assert fast.data.metrics["latency_ms"] <= BOUND_MS
    assert fast.data.metrics["throughput_ips"] > 0
    assert fast.data.metrics["latency_p95_ms"] >= fast.data.metrics["latency_ms"]
    assert len(client.get_metric_history(fast.info.run_id, "val_acc")) == 2

    (folder,) = [p for p in (tmp_path / "ray").iterdir() if p.name.startswith("bounded-")]
    study = load_study(folder)
    by_filters = {t.params["stage1.filters"]: t for t in study.trials}
    told = by_filters[256]
    assert told.state == TrialState.PRUNED and not told.intermediate_values
    assert "latency" in told.user_attrs[INFEASIBLE_ATTR]
    # by how much it missed: its latency over the bound, less one, as the size limits count
    excess = told.user_attrs["latency_ms"] / BOUND_MS - 1
    assert told.constraints["feasible"] == pytest.approx(excess)
    assert by_filters[4].state == TrialState.COMPLETE and by_filters[4].constraints == {}
    # Tune's own folders: checkpoints of the fast trial only
    checkpoints = {p.parent.name for p in Path(folder).glob("trial_*/checkpoint_*")}
    assert checkpoints == {f"trial_{fast.data.tags['searcher.trial_id']}"}


PARETO_SPACE = textwrap.dedent('''
    SETTINGS = {"epochs": 2, "num_samples": 16, "grace_period": 1, "reduction_factor": 2,
                "second_objective": "latency_ms", "seed": 0}

    def space(trial):
        stages = trial.suggest_int("stages", 1, 2)
        for i in range(1, stages + 1):
            trial.suggest_categorical(f"stage{i}.filters", [4, 8, 16, 32])
        trial.suggest_float("lr", 1e-3, 0.3, log=True)
        return {"batch_size": 32, "head": "flatten"}
''')


def test_a_pareto_search_stops_trials_early_models_both_objectives_and_logs_its_front(
        local_ray, tiny_cifar, tmp_path):
    import json

    space = tmp_path / "twofold.py"
    space.write_text(PARETO_SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_main([str(space), "--data-dir", str(tiny_cifar), "--tracking-uri", uri,
                     "--storage-path", str(tmp_path / "ray")]) == 0

    (folder,) = [p for p in (tmp_path / "ray").iterdir() if p.name.startswith("twofold-")]
    study = load_study(folder)
    # 16 trials, the last 10 proposed by TPE on both objectives after ParetoASHA stopped some:
    # pruned trials with epochs in the study, never told as complete
    assert len(study.trials) == 16
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(len(t.intermediate_values) == 1 for t in pruned)
    assert all(len(t.intermediate_values) == 2 for t in study.trials
               if t.state == TrialState.COMPLETE)
    assert all("latency_ms" in t.user_attrs for t in study.trials)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("twofold")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`searcher.role` = 'search'")
    front = json.loads(Path(client.download_artifacts(parent.info.run_id, "pareto.json",
                                                      str(tmp_path))).read_text())
    points = {(p["val_acc"], p["latency_ms"]) for p in front["points"] if p["on_front"]}
    others = [(p["val_acc"], p["latency_ms"]) for p in front["points"]]
    assert points and parent.data.metrics["front_size"] == len(front["front"])
    for acc, ms in points:  # no point beats a front member in both
        assert not any(a >= acc and m <= ms and (a, m) != (acc, ms) for a, m in others)
    board = json.loads(Path(client.download_artifacts(parent.info.run_id, "leaderboard.json",
                                                      str(tmp_path))).read_text())
    assert {r["trial"] for r in board if r["front"]} == set(front["front"])
