"""Promotion with --confirm and --refit: a real local Ray retrains a logged search's top
configurations on tiny CIFAR-layout data, logging to a real sqlite MLflow store."""
from __future__ import annotations

import json
import statistics

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from searcher.commands.promote import main as promote_main
from searcher.spec.params import split_params
from searcher.spec.space import load_space
from searcher.tracking import store as tracking
from searcher.tracking import tags
from searcher.tracking.champion import load_champion
from searcher.training.checkpoint import (
    classifier_from_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from searcher.training.data import channel_stats, load_cifar10, load_search_data
from searcher.training.model import build_model
from searcher.tune.confirm import SEED_TAG, SOURCE_TRIAL_TAG

EPOCHS = 3
SPACE = "SETTINGS = {'seed': 0}\ndef space(trial):\n    trial.suggest_int('stages', 1, 1)\n"
COMMON = {"stages": 1, "batch_norm": True, "head": "gap", "batch_size": 32}
# name: (the trial's parameters, the best validation score the search logged for it)
TRIALS = {
    # The search's top score, and luck: at this learning rate the network cannot learn.
    "lucky": ({**COMMON, "filters": 8, "lr": 1e-7, "momentum": 0.0}, 0.9),
    "good": ({**COMMON, "filters": 8, "lr": 0.05}, 0.6),
    "third": ({**COMMON, "filters": 4, "lr": 0.05}, 0.3),
}


def logged_search(tmp_path, tiny_cifar, uri: str) -> tuple[dict[str, str], object]:
    """A search's parent run (with its datasets) and three trial runs with checkpoints, as a
    search logs them; returns the trial run ids by name and the search's data."""
    (tmp_path / "tiny.py").write_text(SPACE)
    space = load_space(tmp_path / "tiny.py", {"data_dir": str(tiny_cifar)})
    s = space.settings
    data = load_search_data(s.dataset, tiny_cifar, s.image_size, s.val_fraction, s.seed)
    client = tracking.connect(uri)
    parent = tracking.start_search_run(client, space, {}, data=data)
    experiment = client.get_run(parent).info.experiment_id
    runs = {}
    for name, (params, value) in TRIALS.items():
        arch, train = split_params(params, num_classes=10, in_channels=3, image_size=32,
                                   epochs=EPOCHS)
        folder = tmp_path / f"ckpt_{name}"
        folder.mkdir()
        save_checkpoint(folder, arch=arch, train=train, metrics={"val_acc": value},
                        classes=data.classes, mean=data.mean, std=data.std,
                        trainer_state={"model": build_model(arch).state_dict()})
        run = client.create_run(experiment, run_name=name, tags={
            MLFLOW_PARENT_RUN_ID: parent, tags.ROLE_TAG: "trial",
            tags.TRIAL_ID_TAG: f"t_{name}"}).info.run_id
        for key, v in params.items():
            client.log_param(run, key, v)
        client.log_metric(run, tags.best_key("val_acc"), value)
        client.log_artifacts(run, str(folder), "checkpoint")
        client.set_terminated(run)
        runs[name] = run
    client.set_terminated(parent)
    return runs, data


def children(client: MlflowClient, run_id: str, role: str):
    experiment = client.get_run(run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}' and "
                                            f"tags.`{tags.ROLE_TAG}` = '{role}'")


def promotion_run(client: MlflowClient):
    experiment = client.get_experiment_by_name("tiny").experiment_id
    (run,) = client.search_runs([experiment], f"tags.`{tags.ROLE_TAG}` = 'promotion'")
    return run


def test_confirm_retrains_the_top_k_and_promotes_the_best_mean(tmp_path, tiny_cifar, local_ray,
                                                               capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs, _ = logged_search(tmp_path, tiny_cifar, uri)
    assert promote_main(["--experiment", "tiny", "--tracking-uri", uri, "--data-dir",
                         str(tiny_cifar), "--confirm", "2", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("[searcher] retrain ")]) == 4

    client = MlflowClient(uri)
    promo = promotion_run(client)
    retrains = children(client, promo.info.run_id, "confirm")
    # The top two by the search's score, each with the two fresh seeds; the third is left alone.
    assert sorted((r.data.tags[SOURCE_TRIAL_TAG], r.data.tags[SEED_TAG]) for r in retrains) == \
        sorted((runs[name], seed) for name in ("lucky", "good") for seed in ("1", "2"))
    for r in retrains:
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_acc")] == [1, 2, 3]
        assert r.data.params["epochs"] == str(EPOCHS) and r.data.params["lr"]
        assert client.list_artifacts(r.info.run_id, "checkpoint")

    record = json.loads(open(client.download_artifacts(promo.info.run_id, "confirm.json",
                                                       str(tmp_path))).read())
    by_trial = {row["trial_run"]: row for row in record["candidates"]}
    for row in record["candidates"]:
        values = [client.get_run(run_id).data.metrics["best_val_acc"]
                  for run_id in row["retrain_runs"]]
        assert row["values"] == pytest.approx(values)
        assert row["mean"] == pytest.approx(statistics.fmean(values))
        assert row["std"] == pytest.approx(statistics.stdev(values))
    # Ranked by the mean over fresh seeds, not by the search's lucky maximum.
    assert by_trial[runs["good"]]["mean"] > by_trial[runs["lucky"]]["mean"]
    assert record["winner"]["trial_run"] == runs["good"]
    assert promo.data.params["confirm_k"] == "2" and promo.data.params["seeds"] == "2"
    assert promo.data.params["refit"] == "False"
    assert promo.data.metrics["confirm_mean"] == pytest.approx(by_trial[runs["good"]]["mean"])
    assert promo.data.metrics["confirm_std"] == pytest.approx(by_trial[runs["good"]]["std"])

    # The champion is the winner's best seed's checkpoint.
    version = client.get_model_version_by_alias("tiny", "champion")
    winner_runs = by_trial[runs["good"]]["retrain_runs"]
    best = max(winner_runs, key=lambda r: client.get_run(r).data.metrics["best_val_acc"])
    assert version.tags["source_run"] == record["winner"]["promoted_run"] == best
    assert version.tags["source_trial_run"] == runs["good"]
    assert_champion_is(client, uri, best, tiny_cifar, tmp_path)


def assert_champion_is(client: MlflowClient, uri: str, source_run: str, tiny_cifar, tmp_path):
    """The registered champion computes what `source_run`'s checkpoint does."""
    ckpt = load_checkpoint(client.download_artifacts(source_run, "checkpoint", str(tmp_path)))
    images = torch.from_numpy(load_cifar10(tiny_cifar, train=False, download=False)[0].x)
    with torch.no_grad():
        expected = classifier_from_checkpoint(ckpt)(images)
        mlflow.set_tracking_uri(uri)
        got = load_champion("models:/tiny@champion")(images)
    torch.testing.assert_close(got, expected)
    return ckpt


def test_refit_trains_on_train_and_validation(tmp_path, tiny_cifar, local_ray, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs, data = logged_search(tmp_path, tiny_cifar, uri)
    assert promote_main(["--experiment", "tiny", "--tracking-uri", uri, "--data-dir",
                         str(tiny_cifar), "--confirm", "9", "--seeds", "1", "--refit"]) == 0
    out = capsys.readouterr().out
    assert "only 3 distinct trained configuration(s)" in out  # fewer than K: all there is
    assert "[searcher] refit done:" in out

    client = MlflowClient(uri)
    promo = promotion_run(client)
    assert len(children(client, promo.info.run_id, "confirm")) == 3
    (refit,) = children(client, promo.info.run_id, "refit")
    everything = len(data.train) + len(data.val)
    assert everything == 400 and refit.data.metrics["train_images"] == everything
    assert promo.data.params["refit"] == "True"
    assert promo.data.params["refit_train_images"] == str(everything)
    assert "val_acc" not in refit.data.metrics and "no validation metric" in \
        refit.data.tags["mlflow.note.content"]
    assert len(client.get_metric_history(refit.info.run_id, "train_loss")) == EPOCHS
    winner = json.loads(open(client.download_artifacts(
        promo.info.run_id, "confirm.json", str(tmp_path))).read())["winner"]
    assert refit.data.tags[SOURCE_TRIAL_TAG] == winner["trial_run"] != runs["lucky"]

    version = client.get_model_version_by_alias("tiny", "champion")
    assert version.tags["source_run"] == refit.info.run_id
    ckpt = assert_champion_is(client, uri, refit.info.run_id, tiny_cifar, tmp_path)
    # Normalised by the statistics of all the images it trained on.
    mean, _ = channel_stats(np.concatenate([data.train.x, data.val.x]))
    assert ckpt["mean"] == pytest.approx(mean)


@pytest.mark.parametrize("args, says", [
    (["--confirm", "0"], "--confirm 0: K is how many"),
    (["--seeds", "2"], "give --confirm K with it"),
    (["--confirm", "2", "--seeds", "0"], "--seeds 0: must be at least 1"),
])
def test_bad_confirm_options_are_one_line(tmp_path, capsys, args, says):
    with pytest.raises(SystemExit) as exit_:
        promote_main(["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not (tmp_path / "m.db").exists()  # checked before the store is touched
