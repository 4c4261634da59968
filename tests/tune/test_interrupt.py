"""Ctrl-C, as a terminal sends it (SIGINT to the driver's process group), stops a search that
`--resume` then finishes: its running trials are left open, not closed as cut by the budget."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import resumable_space, runs_with_role, write_cifar
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

NUM_SAMPLES, EPOCHS = 5, 3


def test_ctrl_c_stops_a_search_that_resume_finishes(tmp_path):
    data = write_cifar(tmp_path / "data", per_batch=600)
    space = tmp_path / "resumable.py"
    space.write_text(resumable_space(EPOCHS, NUM_SAMPLES))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
            "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
            "--max-concurrent-trials", "2", "--cpus-per-trial", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    client = MlflowClient(uri)
    deadline = time.time() + 300
    while (sum(r.info.status == "FINISHED" for r in runs_with_role(client, "trial")) < 1
           and time.time() < deadline and driver.poll() is None):
        time.sleep(0.5)
    assert driver.poll() is None, "the search ended before Ctrl-C"
    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    out, _ = driver.communicate(timeout=180)
    assert driver.returncode == 130, out[-3000:]
    assert "continue it with --resume" in out
    (parent,) = runs_with_role(client, "search")
    assert parent.info.status == "KILLED"
    cut = [r for r in runs_with_role(client, "trial") if "by the time budget" in
           r.data.tags.get("searcher.outcome", "") + r.data.tags.get("searcher.outcome_detail", "")]
    assert not cut, [r.data.tags for r in cut]  # nothing was closed as if the budget had ended it
    open_before = {r.data.tags["searcher.trial_id"] for r in runs_with_role(client, "trial")
                   if r.info.status == "RUNNING"}

    resumed = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    (parent,) = runs_with_role(client, "search")
    assert parent.info.status == "FINISHED"
    children = runs_with_role(client, "trial")
    ids = [c.data.tags["searcher.trial_id"] for c in children]
    assert len(ids) == NUM_SAMPLES == len(set(ids))  # the budget, each trial once
    assert open_before <= set(ids)  # the interrupted trials went on in their own runs
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.data.tags, steps)
