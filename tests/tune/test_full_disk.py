"""A disk that fills during a tracking outage stops the search in one line, and it resumes.

Real processes: a Ray head, an `mlflow server` stopped mid-search, and `python -m searcher.run`.
Once MLflow is down and the driver's outbox holds a few epochs, the test takes 3 GB of the disk
the search keeps its state on (fallocate), with the driver told to keep 2 GB less than was free
at its start ($SEARCHER_MIN_FREE_MB): the disk has filled, as far as the search can tell. Then
the space is freed, MLflow comes back, and `--resume` finishes the search with every epoch in
MLflow once. (A disk filled to the last byte is not made here: Tune writes its state in place,
and a search that let it fail there could not resume; stopping before is the design.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from itertools import chain

import pytest
import sent_metrics
from conftest import write_cifar
from mlflow.tracking import MlflowClient
from test_faults import SPACE

from searcher.bench.common import MlflowServer
from searcher.tracking.outbox import CHUNK, OUTBOX_FILE, FileJournal
from searcher.tracking.tags import ROLE_TAG, TRIAL_ID_TAG
from searcher.tune.free_space import MIN_FREE_ENV

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

HEADROOM_MB, FILLER_MB = 2048, 3072  # the driver's margin below the free space; what fills it


def owed(journal: FileJournal) -> list[dict]:
    return list(chain.from_iterable(journal.pending(CHUNK)))


def trial_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("resumable")
    return [] if exp is None else client.search_runs([exp.experiment_id],
                                                     f"tags.`{ROLE_TAG}` = 'trial'")


def test_a_full_disk_in_an_outage_stops_the_search_in_one_line_and_it_resumes(head, tmp_path):
    data = write_cifar(tmp_path / "data", per_batch=600)
    space = tmp_path / "resumable.py"
    space.write_text(SPACE)
    server = MlflowServer(tmp_path).start()
    client = MlflowClient(server.uri)
    args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
            "--tracking-uri", server.uri, "--storage-path", str(tmp_path / "ray"),
            "--address", head]
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    if free_mb < FILLER_MB + 1024:
        pytest.skip(f"{free_mb:.0f} MB free: too little to fill {FILLER_MB} MB of it")
    spy = tmp_path / "sent"  # what each driver sent MLflow (the store hides a row sent twice)
    spy.mkdir()
    env = sent_metrics.environment({**os.environ, "RAY_AUTH_MODE": "disabled"}, spy)
    margin = {MIN_FREE_ENV: str(int(free_mb - HEADROOM_MB))}
    driver = subprocess.Popen(args, cwd=tmp_path, env={**env, **margin}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while (not any(client.get_metric_history(r.info.run_id, "val_acc")
                       for r in trial_runs(client))
               and time.time() < deadline and driver.poll() is None):
            time.sleep(0.5)
        server.stop()  # the outage: results go on arriving, MLflow takes none
        (folder,) = (tmp_path / "ray").glob("resumable-*")
        journal = FileJournal(folder / OUTBOX_FILE)
        while (sum(op["op"] == "metrics" for op in owed(journal)) < 2
               and time.time() < deadline and driver.poll() is None):
            time.sleep(0.5)
        assert driver.poll() is None, "the search ended before the disk could fill"
        filler = tmp_path / "filler"
        subprocess.run(["fallocate", "-l", f"{FILLER_MB}M", str(filler)], check=True)
        out, err = driver.communicate(timeout=300)
    finally:
        (tmp_path / "filler").unlink(missing_ok=True)
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    # One line, exit 2, naming the outbox and the way on; no traceback.
    assert driver.returncode == 2, (driver.returncode, err[-6000:], out[-2000:])
    assert "Traceback" not in err, err[-3000:]
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert str(folder) in line and "MB free" in line and "--resume" in line, line
    kept = owed(journal)  # what MLflow, down, never took: the resume must send each once
    assert sum(op["op"] == "metrics" for op in kept) >= 2

    server.start()  # back, with the same store; the space freed
    resumed = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
    assert owed(journal) == []
    runs = trial_runs(client)
    assert runs and all(r.info.status == "FINISHED" for r in runs), [
        (r.data.tags.get(TRIAL_ID_TAG), r.info.status) for r in runs]
    # Every epoch the full outbox held reached its run once; none was sent twice.
    run_of = {r.data.tags[TRIAL_ID_TAG]: r.info.run_id for r in runs}
    for op in kept:
        if op["op"] == "metrics":
            steps = [m.step for m in client.get_metric_history(run_of[op["trial"]], "val_acc")]
            assert steps.count(op["epoch"]) == 1, (op["trial"], op["epoch"], steps)
    twice = {k: n for k, n in sent_metrics.sent(spy).items()
             if k[1] in ("val_acc", "train_loss") and n > 1}
    assert not twice, twice
    server.stop()
