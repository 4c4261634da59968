"""A resumed search keeps to the limits given again: `--num-samples` and `--time-budget` on
`--resume` change them (Tune alone would restore the ones it saved when the search began), and
the record keeps them for the next resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import resumable_space, runs_with_role, write_cifar
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and searches of their own

EPOCHS = 2


def interrupted(tmp_path, num_samples: int, *extra: str):
    """A search of `num_samples` trials, Ctrl-C'd once a trial has finished: its command line
    (for --resume), its environment and its MLflow client."""
    data = write_cifar(tmp_path / "data", per_batch=600)
    space = tmp_path / "resumable.py"
    space.write_text(resumable_space(EPOCHS, num_samples))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
            "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
            "--max-concurrent-trials", "2", "--cpus-per-trial", "1", *extra]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    client = MlflowClient(uri)
    deadline = time.time() + 300
    while (sum(r.info.status == "FINISHED" for r in runs_with_role(client, "trial")) < 1
           and time.time() < deadline and driver.poll() is None):
        time.sleep(0.5)
    assert driver.poll() is None, "the search ended before Ctrl-C"
    os.killpg(driver.pid, signal.SIGINT)
    out, _ = driver.communicate(timeout=180)
    assert driver.returncode == 130, out[-3000:]
    return args, env, client


def resume(tmp_path, args, env, *options: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args + ["--resume", *options], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done


def record(tmp_path) -> dict:
    (path,) = (tmp_path / "ray").glob("resumable-*/searcher_search.json")
    return json.loads(path.read_text())


def test_a_resume_with_more_trials_runs_them_and_keeps_the_new_count(tmp_path):
    args, env, client = interrupted(tmp_path, 3)
    resume(tmp_path, args, env, "--num-samples", "5")
    (parent,) = runs_with_role(client, "search")
    assert parent.info.status == "FINISHED"
    children = runs_with_role(client, "trial")
    ids = [c.data.tags["searcher.trial_id"] for c in children]
    assert len(ids) == 5 == len(set(ids)), ids  # the new count, each trial once
    assert all(c.info.status == "FINISHED" for c in children)
    assert sum("searcher.baseline" in c.data.tags for c in children) == 1  # Optuna went on
    assert record(tmp_path)["settings"]["num_samples"] == 5  # for a second resume


def test_a_resume_with_less_time_ends_the_search_by_the_new_budget(tmp_path):
    # An hour's budget, of which the first run uses well over a second: a resume that gives the
    # search 1 s in all ends it at once, cutting every trial that had not finished, and lets
    # none train to its end (with the budget it saved, Tune would have finished them all).
    args, env, client = interrupted(tmp_path, 4, "--time-budget", "3600")
    finished_before = {r.data.tags["searcher.trial_id"] for r in runs_with_role(client, "trial")
                       if r.info.status == "FINISHED"}
    started = time.monotonic()
    done = resume(tmp_path, args, env, "--time-budget", "1")
    (parent,) = runs_with_role(client, "search")
    assert parent.info.status == "FINISHED"
    after = [c for c in runs_with_role(client, "trial")
             if c.data.tags["searcher.trial_id"] not in finished_before]
    assert after, "no trial was left to cut"
    for child in after:
        outcome = (child.data.tags.get("searcher.outcome", "")
                   + child.data.tags.get("searcher.outcome_detail", ""))
        assert "by the time budget" in outcome, (child.data.tags, done.stdout[-2000:])
    assert time.monotonic() - started < 120
    assert record(tmp_path)["settings"]["time_budget_s"] == 1.0
