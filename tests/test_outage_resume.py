"""A driver killed during a tracking outage loses nothing: its outbox file is replayed on --resume.

Real processes throughout: a Ray head, an `mlflow server` that is stopped mid-search and started
again on the same store, and `python -m searcher.run` SIGKILLed while MLflow is down.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from conftest import write_cifar
from searcher.bench.common import MlflowServer
from searcher.outbox import OUTBOX_FILE, Outbox
from test_faults import EPOCHS, NUM_SAMPLES, SPACE


def metrics_logged(client: MlflowClient) -> int:
    exp = client.get_experiment_by_name("resumable")
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
    return sum(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs)


def test_a_driver_killed_in_an_outage_loses_no_epoch(head, tmp_path):
    data = write_cifar(tmp_path / "data", per_batch=1200)
    space = tmp_path / "resumable.py"
    space.write_text(SPACE)
    server = MlflowServer(tmp_path).start()
    try:
        args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
                "--tracking-uri", server.uri, "--storage-path", str(tmp_path / "ray"),
                "--address", head]
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        client = MlflowClient(server.uri)
        deadline = time.time() + 240
        while metrics_logged(client) < 1 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.5)
        server.stop()  # the outage: results go on arriving, MLflow takes none
        (folder,) = (tmp_path / "ray").glob("resumable-*")
        outbox = Outbox(folder / OUTBOX_FILE)
        while (sum(op["op"] == "metrics" for op in outbox.pending()) < 3
               and time.time() < deadline and driver.poll() is None):
            time.sleep(0.5)
        assert driver.poll() is None, "the search ended before it could be killed"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        kept = [op["what"] for op in outbox.pending()]
        assert sum("metrics" in what for what in kept) >= 3, kept
        owed = {(op["trial"], op["epoch"]) for op in outbox.pending() if op["op"] == "metrics"}

        server.start()  # back, with the same store
        resumed = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
        assert not (folder / "unlogged.txt").exists()
        assert outbox.pending() == []

        exp = client.get_experiment_by_name("resumable")
        children = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
        # Every epoch the killed driver owed MLflow is there, the lost trials' too.
        run_of = {c.data.tags["searcher.trial_id"]: c.info.run_id for c in children}
        for trial, epoch in owed:
            steps = [m.step for m in client.get_metric_history(run_of[trial], "val_acc")]
            assert steps.count(epoch) == 1, (trial, epoch, steps)
        # A trial started after Tune last saved its state is not resumed (Tune never knew it);
        # its run says so (see test_faults), and another trial ran in its place.
        lost = [c for c in children if c.data.tags["searcher.outcome"] == "lost"]
        assert all(c.info.status == "KILLED" for c in lost) and len(lost) <= 2
        children = [c for c in children if c not in lost]
        trial_ids = [c.data.tags["searcher.trial_id"] for c in children]
        assert len(children) == NUM_SAMPLES == len(set(trial_ids))  # one run per trial
        for child in children:
            assert child.info.status == "FINISHED", child.data.tags
            for key in ("val_acc", "train_loss"):  # every epoch, each exactly once
                steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
                assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.data.tags, key, steps)
            assert client.list_artifacts(child.info.run_id, "checkpoint")
    finally:
        server.stop()
