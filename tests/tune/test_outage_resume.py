"""A driver killed during a tracking outage loses nothing: its outbox is replayed on --resume.

Real processes throughout: a Ray head, an `mlflow server` that is stopped mid-search and started
again on the same store, and `python -m searcher.run` SIGKILLed while MLflow is down. With a
file system for Tune's storage the outbox is a file beside Tune's state; with a URI storage and a
study database it is in PostgreSQL, and the resume runs from another, empty working folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import chain
from pathlib import Path

import pytest
import sent_metrics
from conftest import write_cifar
from mlflow.tracking import MlflowClient
from test_faults import EPOCHS, NUM_SAMPLES, SPACE

from searcher.bench.common import MlflowServer
from searcher.tracking.outbox import CHUNK, OUTBOX_FILE, DatabaseJournal, FileJournal, Outbox
from searcher.tracking.writer import Writer
from searcher.tune.tuner import CHECKPOINTS_KEPT

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

# With a URI storage Tune uploads its experiment snapshot after the fact, while a trial's older
# checkpoints are deleted at once; a driver killed in between leaves a snapshot naming a checkpoint
# gone from the storage, and Tune fails that trial on resume ("does not exist on storage
# anymore"). A trial keeps its best CHECKPOINTS_KEPT and its latest, so one of EPOCHS epochs has
# none deleted and cannot fail so: every trial here must finish (asserted below). A longer run
# would not test more: past CHECKPOINTS_KEPT + 1 epochs the design allows that failure (docs/resume.md,
# "When a search is interrupted"), and it comes only in a race seen once in several runs.
assert EPOCHS <= CHECKPOINTS_KEPT + 1
EPOCH_KEYS = ("val_acc", "train_loss")


def waiting(journal) -> list[dict]:
    """The writes of a journal not accepted yet."""
    return list(chain.from_iterable(journal.pending(CHUNK)))


def metrics_logged(client: MlflowClient) -> int:
    exp = client.get_experiment_by_name("resumable")
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
    return sum(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs)


def test_a_driver_killed_in_an_outage_loses_no_epoch(head, tmp_path):
    kill_in_an_outage_and_resume(head, tmp_path, str(tmp_path / "ray"), [], tmp_path, tmp_path,
                                 lambda name: FileJournal(tmp_path / "ray" / name / OUTBOX_FILE))


def test_a_head_lost_in_an_outage_owes_nothing_with_the_outbox_in_postgres(head, postgres,
                                                                           tmp_path):
    database = postgres("optuna")
    on_head, elsewhere = tmp_path / "head", tmp_path / "elsewhere"
    on_head.mkdir()
    elsewhere.mkdir()
    # file:// is a URI to Tune and to searcher (no state folder beside Tune's) yet needs no S3.
    kill_in_an_outage_and_resume(head, tmp_path, f"file://{tmp_path / 'ray'}",
                                 ["--study-storage", database], on_head, elsewhere,
                                 lambda name: DatabaseJournal(database, name))
    assert not list(tmp_path.rglob(OUTBOX_FILE))  # never a file journal, on the head either


def kill_in_an_outage_and_resume(head: str, tmp_path: Path, storage: str, extra: list[str],
                                 on_head: Path, resume_in: Path, journal_of) -> None:
    """Run a search from `on_head`, stop MLflow, SIGKILL the driver once its outbox (`journal_of`
    the search's name) holds 3 epochs, then resume from `resume_in` and check MLflow got them."""
    data = write_cifar(tmp_path / "data", per_batch=600)
    space = tmp_path / "resumable.py"
    space.write_text(SPACE)
    server = MlflowServer(tmp_path).start()
    try:
        args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
                "--tracking-uri", server.uri, "--storage-path", storage, "--address", head, *extra]
        spy = tmp_path / "sent"  # what each driver sent MLflow (the store hides a row sent twice)
        spy.mkdir()
        env = sent_metrics.environment({**os.environ, "RAY_AUTH_MODE": "disabled"}, spy)
        driver = subprocess.Popen(args, cwd=on_head, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        client = MlflowClient(server.uri)
        deadline = time.time() + 240
        while metrics_logged(client) < 1 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.5)
        server.stop()  # the outage: results go on arriving, MLflow takes none
        (tune_folder,) = (tmp_path / "ray").glob("resumable-*")  # named after the search
        journal = journal_of(tune_folder.name)
        while (sum(op["op"] == "metrics" for op in waiting(journal)) < 3
               and time.time() < deadline and driver.poll() is None):
            time.sleep(0.5)
        assert driver.poll() is None, "the search ended before it could be killed"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        pending = waiting(journal)
        assert sum(op["op"] == "metrics" for op in pending) >= 3, [op["what"] for op in pending]
        owed = {(op["trial"], op["epoch"]) for op in pending if op["op"] == "metrics"}
        if resume_in != on_head:  # the head is lost with its working folder and state in it
            assert (on_head / "searcher_state" / tune_folder.name).is_dir()
            shutil.rmtree(on_head)

        server.start()  # back, with the same store
        # A trial's run and first owed epoch reached MLflow just before the kill, unmarked in
        # the outbox: the resume must not send that epoch again.
        with sent_metrics.recording(spy / "sent.jsonl"):
            accepted_unmarked(client, pending)
        resumed = subprocess.run(args + ["--resume"], cwd=resume_in, env=env,
                                 capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
        state = (tune_folder if resume_in == on_head
                 else resume_in / "searcher_state" / tune_folder.name)
        assert (state / "leaderboard.txt").is_file()  # where unlogged.txt would be
        assert not (state / "unlogged.txt").exists()
        assert waiting(journal) == []

        exp = client.get_experiment_by_name("resumable")
        children = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
        # Every epoch the killed driver owed MLflow is there, the lost trials' too.
        run_of = {c.data.tags["searcher.trial_id"]: c.info.run_id for c in children}
        for trial, epoch in owed:
            steps = [m.step for m in client.get_metric_history(run_of[trial], "val_acc")]
            assert steps.count(epoch) == 1, (trial, epoch, steps)
        # No epoch of any run (lost ones too) was sent twice, by the killed driver, the test's
        # unmarked write or the resume (one missing here is caught by the histories below: a
        # write the server took as it stopped is in the store, but not recorded as sent).
        sent = sent_metrics.sent(spy)
        assert sent, "no driver recorded what it sent"
        twice = {k: n for k, n in sent.items() if k[1] in EPOCH_KEYS and n > 1}
        assert not twice, twice
        # A trial started after Tune last saved its state is not resumed (Tune never knew it);
        # its run says so (see test_faults), and another trial ran in its place.
        lost = [c for c in children if c.data.tags["searcher.outcome"] == "lost"]
        assert all(c.info.status == "KILLED" for c in lost) and len(lost) <= 2
        children = [c for c in children if c not in lost]
        trial_ids = [c.data.tags["searcher.trial_id"] for c in children]
        assert len(children) == NUM_SAMPLES == len(set(trial_ids))  # one run per trial
        for child in children:
            assert child.info.status == "FINISHED", child.data.tags
            for key in EPOCH_KEYS:  # every epoch, each exactly once
                steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
                assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.data.tags, key, steps)
            assert client.list_artifacts(child.info.run_id, "checkpoint")
    finally:
        server.stop()


def accepted_unmarked(client: MlflowClient, pending: list[dict]) -> None:
    """Send to MLflow, as the killed driver's writer would have just before the kill, the first
    owed epoch of a trial (and its run, if that was owed too), leaving the outbox as it was."""
    exp = client.get_experiment_by_name("resumable")
    (search,) = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'search'")
    writer = Writer(client.tracking_uri, search.info.run_id, Outbox(None))
    for run in client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'"):
        writer.run_ids[run.data.tags["searcher.trial_id"]] = run.info.run_id
    trial = next(op["trial"] for op in pending if op["op"] == "metrics")
    ops = [op for op in pending if op["trial"] == trial and op["op"] in ("create", "metrics")]
    took = [op for op in ops if op["op"] == "create"] + [next(op for op in ops
                                                             if op["op"] == "metrics")]
    assert writer._send(took) == [] and not writer.rejected
