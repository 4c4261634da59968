"""One driver per search: a second `--resume` while the first runs is refused in one line and
touches nothing; the first goes on to the end."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import resumable_space, runs_with_role, write_cifar
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

NUM_SAMPLES, EPOCHS = 4, 3


def test_a_second_driver_on_a_running_search_is_refused(head, tmp_path):
    data = write_cifar(tmp_path / "data", per_batch=600)
    space = tmp_path / "resumable.py"
    space.write_text(resumable_space(EPOCHS, NUM_SAMPLES))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
            "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--address", head]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    client = MlflowClient(uri)
    deadline = time.time() + 240
    while not runs_with_role(client, "trial") and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
    assert first.poll() is None, "the first driver ended before the second came"
    (parent,) = runs_with_role(client, "search")

    second = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is being run by another driver (pid " in lines[0], lines
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"  # untouched

    assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
    children = runs_with_role(client, "trial")
    assert len(children) == NUM_SAMPLES
    assert all(c.info.status == "FINISHED" for c in children)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
