"""Faults, for real: the driver is SIGKILLed mid-search and `--resume` finishes the same search."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import sent_metrics
from conftest import resumable_space, write_cifar
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

NUM_SAMPLES, EPOCHS = 6, 3
# Trials in flight at once: the `head` fixture's 2 CPUs at the default cpus_per_trial of 1. Tune
# takes it as max_concurrent_trials (search.py), so Optuna has at most SLOTS trials handed out and
# not finished, running or waiting for a slot, at any moment: at the kill too.
SLOTS = 2

SPACE = resumable_space(EPOCHS, NUM_SAMPLES)


def finished_children(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("resumable")
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
    return [r for r in runs if r.info.status == "FINISHED"]


def test_killed_driver_resumes_the_same_search(head, tmp_path):
    data = write_cifar(tmp_path / "data", per_batch=600)
    space = tmp_path / "resumable.py"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
            "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--address", head]
    spy = tmp_path / "sent"  # what each driver sent MLflow (its SQL store hides a row sent twice)
    spy.mkdir()
    env = sent_metrics.environment({**os.environ, "RAY_AUTH_MODE": "disabled"}, spy)
    driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    client = MlflowClient(uri)
    deadline = time.time() + 240
    while len(finished_children(client)) < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert driver.poll() is None, "the search ended before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = {r.data.tags["searcher.trial_id"] for r in finished_children(client)}
    assert 2 <= len(done_before) < NUM_SAMPLES

    resumed = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout

    exp = client.get_experiment_by_name("resumable")
    parents = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent went on
    children = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
    # A trial started just before the kill, after Tune last saved its state, is not resumed (Tune
    # never knew it); its run says so, and another trial ran in its place. Only a trial running at
    # the kill has a run to lose: SLOTS at most.
    lost = [c for c in children if c.data.tags["searcher.outcome"] == "lost"]
    assert all(c.info.status == "KILLED" for c in lost) and len(lost) <= SLOTS
    children = [c for c in children if c.info.run_id not in {r.info.run_id for r in lost}]
    trial_ids = [c.data.tags["searcher.trial_id"] for c in children]
    assert len(children) == NUM_SAMPLES == len(set(trial_ids))  # the budget, no duplicate runs
    assert done_before <= set(trial_ids)  # finished trials kept
    assert sum("searcher.baseline" in c.data.tags for c in children) == 1  # Optuna did not restart
    for child in children:
        assert child.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.data.tags, steps)
    twice = {k: n for k, n in sent_metrics.sent(spy).items()
             if k[1] in ("val_acc", "train_loss") and n > 1}
    assert not twice, twice  # and none sent twice, which the store would not show

    from searcher.tune.state import load_study
    (folder,) = (tmp_path / "ray").glob("resumable-*")
    study = load_study(folder)
    # (a proposal that repeated a trial in flight is told FAIL when proposed, never run: not
    # one of the trials the kill left unfinished)
    states = [t.state.name for t in study.trials if "repeat_of" not in t.user_attrs]
    assert states.count("COMPLETE") == NUM_SAMPLES
    # The trials Optuna handed out after Tune's last snapshot of the experiment (taken every
    # ~10 s; see search.checkpoint_config) and not finished at the kill: those Tune lost, closed
    # as pruned with the epochs they had reported (failed if none), and those still waiting for a
    # slot, closed as failed. Each lost run is one of them; all of them were in flight at the
    # kill, so SLOTS at most. Nothing else ends unfinished: every other trial resumed.
    assert set(states) <= {"COMPLETE", "FAIL", "PRUNED"}
    assert states.count("PRUNED") <= len(lost), (states, len(lost))
    closed = states.count("FAIL") + states.count("PRUNED")
    assert len(lost) <= closed <= SLOTS, (states, len(lost))
