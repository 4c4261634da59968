"""A real search end to end: a local Ray, a real MLflow store, tiny data in the CIFAR layout."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import ROOT, SHARED_EPOCHS, SHARED_SAMPLES, SHARED_SPACE
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from searcher.commands import promote as promote_mod
from searcher.commands.run import main as run_main
from searcher.errors import UserError
from searcher.sampling.fidelity import COST_ATTR
from searcher.spec.feasibility import proposal_check, proposal_cost
from searcher.spec.space import load_space
from searcher.tracking.champion import load_champion
from searcher.tracking.readback import param_value as _value
from searcher.tracking.store import data_digests
from searcher.training.data import load_cifar10, load_search_data
from searcher.tune.state import load_study
from searcher.tune.study_searcher import INFEASIBLE_ATTR, StudySearcher
from searcher.tune.tuner import make_study
from searcher.tune.warm_start import WARM_START_ATTR, load_warm_start

pytestmark = pytest.mark.services  # starts Ray, MLflow or a search of its own

NUM_SAMPLES, EPOCHS = SHARED_SAMPLES, SHARED_EPOCHS
TINY_SPACE = SHARED_SPACE

BAD_SPACE = textwrap.dedent('''
    SETTINGS = {"epochs": 1, "num_samples": 1, "seed": 0}

    def space(trial):
        trial.suggest_int("stages", 1, 1)
        trial.suggest_float("lr", 1e-7, 1e-6, log=True)
        return {"filters": 4, "optimizer": "sgd", "momentum": 0.0, "crop": 0, "flip": False}

    BASELINES = {"frozen": {"stages": 1, "lr": 1e-7}}
''')


@pytest.fixture(scope="module")
def copied_search(finished_search, tmp_path_factory):
    """The run's finished search, copied: this module's tests add searches and models to it."""
    return finished_search.copy(tmp_path_factory.mktemp("tuner") / "store")


@pytest.fixture(scope="module")
def store(copied_search):
    return copied_search.root


@pytest.fixture(scope="module")
def first_search(copied_search, local_ray):
    """The first search's store; the tests run more searches on it."""
    return copied_search.uri


@pytest.fixture(scope="module")
def tiny_cifar(copied_search):
    """The first search's own data (the same images as the session's tiny_cifar)."""
    return copied_search.data


def runs_of(client: MlflowClient, role: str, experiment: str = "tiny"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.`searcher.role` = '{role}'",
                              order_by=["attributes.start_time ASC"])


def test_search_logs_a_parent_and_one_child_per_trial(first_search):
    client = MlflowClient(first_search)
    (parent,) = runs_of(client, "search")
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"settings.json", "versions.json", "leaderboard.json", "space", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    assert parent.data.params["epochs"] == str(EPOCHS)
    assert parent.data.tags["mlflow.source.git.commit"]

    children = runs_of(client, "trial")
    assert len(children) == NUM_SAMPLES
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    # the baseline ran once (it is proposed first; trials start two at a time, in either order)
    assert [c.data.tags.get("searcher.baseline") for c in children].count("tiny_tutorial") == 1

    outcomes = [c.data.tags["searcher.outcome"] for c in children]
    assert set(outcomes) <= {"completed", "stopped early", "infeasible"}
    assert "stopped early" in outcomes, outcomes  # ASHA stopped someone, and MLflow shows it
    assert "completed" in outcomes
    for child in children:
        if child.data.tags["searcher.outcome"] == "infeasible":
            assert "max_mmacs" in child.data.tags["searcher.outcome_detail"]
            continue
        history = client.get_metric_history(child.info.run_id, "val_acc")
        epochs = int(child.data.metrics["epochs_run"])
        # the first look at step 0, then every epoch: no gaps, no repeats
        assert sorted(m.step for m in history) == list(range(0, epochs + 1))
        if child.data.tags["searcher.outcome"] == "stopped early":
            assert epochs < EPOCHS
        if epochs:
            assert child.data.metrics["best_val_acc"] == max(m.value for m in history if m.step)
        files = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")}
        assert files == ({"checkpoint/checkpoint.pt"} if epochs else set())


def test_tune_writes_no_per_result_logs_of_its_own(first_search, store):
    """MLflow keeps the metrics; Tune's CSV, JSON and TensorBoard loggers would cost its loop."""
    trials = list((store / "ray").glob("*/trial_*"))
    assert trials and list((store / "ray").rglob("checkpoint.pt"))
    for pattern in ("progress.csv", "result.json", "events.out.tfevents*"):
        assert not list((store / "ray").rglob(pattern)), pattern


def folder_of(store, parent_run_id) -> Path:
    """The state folder of the search logged as `parent_run_id` (beside Tune's state)."""
    for marker in (store / "ray").glob("*/searcher_search.json"):
        if json.loads(marker.read_text())["parent_run_id"] == parent_run_id:
            return marker.parent
    raise AssertionError(f"no study for {parent_run_id}")


def study_of(store, parent_run_id):
    """The Optuna study of the search logged as `parent_run_id` (its journal beside Tune's state)."""
    return load_study(folder_of(store, parent_run_id))


def test_optuna_is_told_what_each_trial_was(first_search, store):
    client = MlflowClient(first_search)
    parent = runs_of(client, "search")[0]
    study = study_of(store, parent.info.run_id)
    children = runs_of(client, "trial")
    infeasible = [t for t in study.trials if INFEASIBLE_ATTR in t.user_attrs]
    measured = [t for t in study.trials if INFEASIBLE_ATTR not in t.user_attrs]
    assert len(measured) == len(children)  # an infeasible proposal never became a trial
    assert parent.data.metrics["proposals"] == len(study.trials)
    assert parent.data.metrics["infeasible_proposals"] == len(infeasible)
    for trial in infeasible:
        assert trial.state == TrialState.PRUNED and trial.constraints["feasible"] > 0
        assert trial.value is None and not trial.intermediate_values
    for child in children:
        params = {k: _value(v) for k, v in child.data.params.items()}
        (trial,) = [t for t in measured if all(params.get(k) == v for k, v in t.params.items())]
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_acc")}
        assert trial.intermediate_values == history  # every epoch, as MLflow has it
        if child.data.tags["searcher.outcome"] == "completed":
            assert trial.state == TrialState.COMPLETE and trial.value == history[EPOCHS]
        else:  # stopped by ASHA: pruned, not a final score
            assert child.data.tags["searcher.outcome"] == "stopped early"
            assert trial.state == TrialState.PRUNED and max(history) < EPOCHS


def test_a_first_look_is_never_a_trials_result(first_search, store):
    """Every trial is first scored after half its first epoch (step 0); ASHA stops some there.
    That score is in MLflow and in the study as step 0, and nowhere a result: not a trial's
    best, not a study value, not on the leaderboard, not what promotion could pick."""
    client = MlflowClient(first_search)
    parent = runs_of(client, "search")[0]
    study = study_of(store, parent.info.run_id)
    children = [c for c in runs_of(client, "trial")
                if c.data.tags["searcher.outcome"] != "infeasible"]
    looked_only = [c for c in children if c.data.metrics["epochs_run"] == 0]
    assert looked_only, "ASHA stopped no trial at its first look"
    assert len(looked_only) < len(children)
    best_epochs = []
    for child in children:
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_acc")}
        assert 0 in history  # the look, scored on the whole validation split
        epochs = {step: v for step, v in history.items() if step}
        params = {k: _value(v) for k, v in child.data.params.items()}
        (trial,) = [t for t in study.trials if t.params and all(
            params.get(k) == v for k, v in t.params.items())]
        if child in looked_only:
            assert child.data.tags["searcher.outcome_detail"] == "stopped early: at its first look"
            assert "best_val_acc" not in child.data.metrics
            assert "best_epoch" not in child.data.metrics
            # pruned (Optuna keeps a pruned trial's last step as its value): never COMPLETE
            assert trial.state == TrialState.PRUNED
            assert trial.intermediate_values == {0: history[0]}
        else:
            assert child.data.metrics["best_val_acc"] == max(epochs.values())
            assert child.data.metrics["best_epoch"] >= 1
            best_epochs.append(max(epochs.values()))
        if trial.state == TrialState.COMPLETE:
            assert trial.value == history[EPOCHS]
    rows = json.loads(Path(client.download_artifacts(parent.info.run_id, "leaderboard.json"))
                      .read_text())
    scored = [row["val_acc"] for row in rows if row.get("val_acc") is not None]
    assert sorted(scored, reverse=True) == sorted(best_epochs, reverse=True)
    assert parent.data.metrics["best_val_acc"] == max(best_epochs)


def test_the_sampler_flag_picks_the_sampler_and_the_parent_run_says_which(local_ray, tiny_cifar,
                                                                          store, capsys):
    space = store / "tiny.py"
    uri = f"sqlite:///{store / 'sampler.db'}"
    assert run_main([str(space), "--data-dir", str(tiny_cifar), "--tracking-uri", uri,
                     "--storage-path", str(store / "ray"), "--sampler", "random",
                     "--num-samples", "2", "--epochs", "1"]) == 0
    # The first lines say where it runs and logs; the last ones how to open and promote it.
    out = capsys.readouterr().out.splitlines()
    mine = [line for line in out if line.startswith("[searcher]")]
    assert mine[0].startswith("[searcher] local Ray: 2 CPUs, 0 GPUs")
    assert mine[1] == f"[searcher] MLflow: local store {uri} (a server: --tracking-uri or MLFLOW_TRACKING_URI)"
    assert out[-2].startswith(f"Browse:   searcher ui --tracking-uri {uri}, then open "
                              f"http://127.0.0.1:5000/#/experiments/")
    assert out[-1].startswith("Promote:  searcher promote --experiment")
    (parent,) = runs_of(MlflowClient(uri), "search")
    assert parent.data.params["sampler"] == "random"
    assert parent.data.tags["searcher.sampler"] == "random"
    with pytest.raises(SystemExit) as exit_:
        run_main([str(space), "--tracking-uri", uri, "--sampler", "grid"])
    assert exit_.value.code == 2


def test_a_warm_started_search_holds_the_earlier_trials(first_search, store, tiny_cifar, tmp_path):
    client = MlflowClient(first_search)
    first = runs_of(client, "search")[0].info.run_id
    earlier = runs_of(client, "trial")
    space = store / "tiny.py"
    assert run_main([str(space), "--data-dir", str(tiny_cifar), "--tracking-uri", first_search,
                     "--storage-path", str(store / "ray"), "--warm-start", first,
                     "--num-samples", "2"]) == 0
    warm_parent = [r for r in runs_of(client, "search") if r.info.run_id != first][-1]
    assert warm_parent.data.tags["searcher.warm_start_runs"] == first
    assert warm_parent.data.metrics["warm_start_trials"] == len(earlier)
    study = study_of(store, warm_parent.info.run_id)
    learnt = [t for t in study.trials if WARM_START_ATTR in t.user_attrs]
    assert sorted(t.user_attrs[WARM_START_ATTR] for t in learnt) == sorted(
        r.info.run_id for r in earlier)
    by_run = {r.info.run_id: r for r in earlier}
    data = load_search_data("cifar10", tiny_cifar, 32, 0.1, 0)
    cost = proposal_cost(load_space(space).settings, len(data.classes), data.image_shape)
    for t in learnt:
        run = by_run[t.user_attrs[WARM_START_ATTR]]
        outcome = run.data.tags["searcher.outcome"]
        assert t.state == (TrialState.COMPLETE if outcome == "completed" else TrialState.PRUNED)
        # its cost, as a live trial has it, for the sampler's cost discount
        assert t.user_attrs[COST_ATTR] == cost({k: _value(v) for k, v in run.data.params.items()})
        assert t.user_attrs[COST_ATTR] > 0
    assert len(study.trials) == len(learnt) + warm_parent.data.metrics["proposals"]

    # The baseline ran to the end on the same data in the first search: not run again, but still
    # on the leaderboard, from the first search's run.
    (measured,) = [r for r in earlier if r.data.tags.get("searcher.baseline") == "tiny_tutorial"]
    assert measured.data.tags["searcher.outcome"] == "completed"
    children = [r for r in runs_of(client, "trial")
                if r.data.tags["mlflow.parentRunId"] == warm_parent.info.run_id]
    assert children and not any("searcher.baseline" in r.data.tags for r in children)
    recorded = json.loads(Path(client.download_artifacts(warm_parent.info.run_id,
                                                         "warm_start.json")).read_text())
    assert recorded["baselines_measured"]["tiny_tutorial"]["run_id"] == measured.info.run_id
    def measured_row(leaderboard: str):
        path = client.download_artifacts(warm_parent.info.run_id, "leaderboard.json",
                                         str(tmp_path / leaderboard))
        (row,) = [r for r in json.loads(Path(path).read_text()) if r["baseline"] == "tiny_tutorial"]
        assert row["run_id"] == measured.info.run_id
        assert row["val_acc"] == measured.data.metrics["best_val_acc"]
        assert row["outcome"] == f"earlier search {first[:8]}"
    measured_row("first")

    # Resumed (finished here, so there is nothing left to run), the search does not load its warm
    # start again, and its leaderboard, written anew, still has the baseline measured earlier.
    folder = folder_of(store, warm_parent.info.run_id)
    assert run_main([str(space), "--data-dir", str(tiny_cifar), "--tracking-uri", first_search,
                     "--storage-path", str(store / "ray"), "--resume", str(folder)]) == 0
    measured_row("resumed")


def test_warm_start_skips_what_no_longer_fits_and_changes_the_first_proposals(first_search, store,
                                                                             tiny_cifar, tmp_path):
    client = MlflowClient(first_search)
    first = runs_of(client, "search")[0].info.run_id
    earlier = [r for r in runs_of(client, "trial")
               if r.data.tags["mlflow.parentRunId"] == first]
    narrower = tmp_path / "tiny.py"  # 96 filters are no longer a choice
    narrower.write_text(TINY_SPACE.replace("[4, 8, 96]", "[4, 8]"))
    warm = load_warm_start(client, load_space(narrower), first)
    with_96 = [r for r in earlier if any(
        r.data.params.get(f"stage{i}.filters") == "96"
        for i in range(1, int(r.data.params["stages"]) + 1))]
    assert warm.skipped.get("no longer in the space", 0) == len(with_96)
    assert len(warm.trials) == len(earlier) - len(with_96)
    with pytest.raises(UserError, match="no search run or experiment"):
        load_warm_start(client, load_space(narrower), "no-such-experiment")
    # The baseline counts as measured only on the same images and labels (another seed is
    # another validation split), at the same number of epochs.
    def measured(overrides, seed=0):
        digests = data_digests(load_search_data("cifar10", tiny_cifar, 32, 0.1, seed))
        return load_warm_start(client, load_space(narrower, overrides), first, None,
                               digests).baselines
    assert list(measured({})) == ["tiny_tutorial"]
    assert not measured({"seed": 1}, seed=1)
    assert not measured({"epochs": EPOCHS + 1})
    assert not load_warm_start(client, load_space(narrower), first).baselines  # data unknown

    # The same seeded TPE, once cold and once warm: after the baseline, different proposals.
    space = load_space(store / "tiny.py")
    warm = load_warm_start(client, space, first)
    data = load_search_data("cifar10", tiny_cifar, 32, 0.1, 0)
    check = proposal_check(space.settings, len(data.classes), data.image_shape)
    firsts = []
    for name, trials in (("cold", []), ("warm", warm.trials)):
        (tmp_path / name).mkdir()
        study = make_study(space, tmp_path / name, trials)
        searcher = StudySearcher(study, space.sample, check, "val_acc", "max", EPOCHS)
        proposals = [searcher.suggest(f"{name}{i}") for i in range(4)]
        assert space.baseline_of(proposals[0]) == "tiny_tutorial"
        firsts.append(proposals[1:])
    assert firsts[0] != firsts[1]
    (tmp_path / "measured").mkdir()  # the baseline measured already: not queued again
    study = make_study(space, tmp_path / "measured", warm.trials, measured={"tiny_tutorial"})
    searcher = StudySearcher(study, space.sample, check, "val_acc", "max", EPOCHS)
    assert space.baseline_of(searcher.suggest("measured0")) is None


def test_promotion_sets_champion_and_a_worse_candidate_does_not_move_it(first_search, store,
                                                                      tiny_cifar):
    first = promote_mod.promote(first_search, experiment="tiny", data_dir=str(tiny_cifar))
    assert first["moved"] and first["champion_before"] is None
    client = MlflowClient(first_search)
    assert client.get_model_version_by_alias("tiny", "champion").version == first["version"]

    bad = store / "bad.py"
    bad.write_text(BAD_SPACE)
    assert run_main([str(bad), "--data-dir", str(tiny_cifar), "--tracking-uri", first_search,
                     "--experiment", "tiny", "--storage-path", str(store / "ray")]) == 0
    second = promote_mod.promote(first_search, experiment="tiny", data_dir=str(tiny_cifar))
    assert second["test_acc"] < first["test_acc"]
    assert not second["moved"] and second["champion_before"] == first["version"]
    assert client.get_model_version_by_alias("tiny", "champion").version == first["version"]

    # The champion, loaded the way a user would, predicts labels from raw uint8 images.
    mlflow.set_tracking_uri(first_search)
    model = load_champion("models:/tiny@champion")
    test, _ = load_cifar10(tiny_cifar, train=False, download=False)
    labels = model(torch.from_numpy(test.x)).argmax(1).numpy()
    assert labels.shape == (len(test),)
    assert np.mean(labels == test.y) == pytest.approx(first["test_acc"], abs=1e-6)
    one = model(torch.from_numpy(test.x[:1])).argmax(1)
    assert one.item() == labels[0]

    forced = promote_mod.promote(first_search, experiment="tiny", data_dir=str(tiny_cifar),
                                 force=True)
    assert forced["moved"]
    assert client.get_model_version_by_alias("tiny", "champion").version == forced["version"]


FAILING_SPACE = textwrap.dedent('''
    SETTINGS = {"epochs": 2, "num_samples": 2, "seed": 0}

    def space(trial):
        trial.suggest_int("stages", 1, 1)
        trial.suggest_float("lr", 1e-3, 1e12, log=True)
        return {"filters": 4, "optimizer": "sgd", "batch_size": 32}

    BASELINES = {"explodes": {"stages": 1, "lr": 1e12}, "fine": {"stages": 1, "lr": 0.01}}
''')


def test_a_trial_that_raises_is_recorded_failed_and_the_search_goes_on(local_ray, tiny_cifar,
                                                                       tmp_path):
    space = tmp_path / "failing.py"
    space.write_text(FAILING_SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_main([str(space), "--data-dir", str(tiny_cifar), "--tracking-uri", uri,
                     "--storage-path", str(tmp_path / "ray")]) == 0
    client = MlflowClient(uri)
    (parent,) = runs_of(client, "search", "failing")
    assert parent.info.status == "FINISHED"
    runs = {r.data.tags["searcher.baseline"]: r for r in runs_of(client, "trial", "failing")}
    failed, fine = runs["explodes"], runs["fine"]
    assert failed.info.status == "FAILED" and failed.data.tags["searcher.outcome"] == "failed"
    assert "TrainingDiverged" in failed.data.tags["searcher.outcome_detail"]
    assert "loss became" in failed.data.tags["searcher.outcome_detail"]
    assert fine.data.tags["searcher.outcome"] == "completed" and fine.info.status == "FINISHED"


def test_baselines_run_costliest_first(tmp_path):
    # The longest baseline starts first, so it is not the last thing running, and TPE learns
    # its good region from it as early as it can.
    space = load_space(ROOT / "spaces" / "cifar10.py")
    cost = proposal_cost(space.settings, 10, (3, 32, 32))
    order = sorted(space.baselines, key=lambda name: -cost(space.baselines[name]))
    assert order[0] == "bn_cnn" and list(space.baselines)[0] != "bn_cnn"  # not the listed order
    study = make_study(space, tmp_path, cost=cost)
    asked = [space.baseline_of(space.sample(study.ask())) for _ in space.baselines]
    assert asked == order
