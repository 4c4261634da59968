"""State off the head, for real: an `mlflow server` on PostgreSQL, the Optuna study and the MLflow
outbox in PostgreSQL, and a search whose head is lost mid-way resumed on a new head from an empty
working folder."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psycopg
import pytest
import requests
from conftest import RESUMABLE_BASELINE, free_port, ray_head, resumable_space, write_cifar
from mlflow.tracking import MlflowClient

from searcher.errors import UserError
from searcher.spec.settings import SettingsError, make_settings
from searcher.tracking.outbox import OUTBOX_FILE, STAGE_FOLDER, open_outbox
from searcher.tune.state import RECORD_ATTR, SEARCH_FILE, STUDY_FILE, find_resumable

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

BIN = Path(sys.executable).parent
NUM_SAMPLES, EPOCHS = 5, 2

SPACE = resumable_space(EPOCHS, NUM_SAMPLES)
BASELINE = RESUMABLE_BASELINE


def env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}  # PGPASSWORD comes from the fixture


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, log: Path):
    """A real `mlflow server` on `backend`, on a free loopback port, stopped afterwards."""
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", backend,
             "--artifacts-destination", str(artifacts), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # its first start creates MLflow's tables
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(uri + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        yield uri
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def head(tag: str):
    """A Ray head of its own; leaving the block loses it with everything it ran."""
    return ray_head(f"raypg{tag}", "--num-cpus=2", env=env())


def trial_runs(client: MlflowClient, finished_only: bool = False) -> list:
    exp = client.get_experiment_by_name("pgsearch")
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")
    return [r for r in runs if r.info.status == "FINISHED" or not finished_only]


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_search_whose_head_is_lost_resumes_elsewhere_from_postgres(postgres, tmp_path):
    tracking_db, study_db = postgres("mlflow"), postgres("optuna")
    data = write_cifar(tmp_path / "data", per_batch=600)
    shared = tmp_path / "shared"  # what every node mounts (NFS): Tune's state and checkpoints
    shared.mkdir()
    space = shared / "pgsearch.py"
    space.write_text(SPACE)
    head_dir, other_dir = tmp_path / "head", tmp_path / "elsewhere"
    head_dir.mkdir()
    other_dir.mkdir()
    with mlflow_server(tracking_db, shared / "artifacts", tmp_path / "mlflow.log") as uri:
        args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
                "--tracking-uri", uri, "--storage-path", str(shared / "ray"),
                "--study-storage", study_db]
        client = MlflowClient(uri)
        with head("a") as address:
            driver = subprocess.Popen(args + ["--address", address], cwd=head_dir, env=env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
            deadline = time.time() + 240
            while (len(trial_runs(client, True)) < 1 and time.time() < deadline
                   and driver.poll() is None):
                time.sleep(0.5)
            assert driver.poll() is None, "the search ended before its head could be lost"
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        # The head is gone with its Ray, its driver and its working folder.
        shutil.rmtree(head_dir)
        done_before = {r.data.tags["searcher.trial_id"] for r in trial_runs(client, True)}
        assert 1 <= len(done_before) < NUM_SAMPLES

        with head("b") as address:
            resumed = subprocess.run(args + ["--address", address, "--resume"], cwd=other_dir,
                                     env=env(), capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "from study database" in resumed.stdout, resumed.stdout[-2000:]

        exp = client.get_experiment_by_name("pgsearch")
        parents = client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'search'")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent
        children = trial_runs(client)
        # A trial started after Tune's last save before the kill is not resumed (Tune never
        # knew it); its run says so, and another trial ran in its place.
        lost = {c.info.run_id for c in children if c.data.tags["searcher.outcome"] == "lost"}
        assert all(c.info.status == "KILLED" for c in children if c.info.run_id in lost)
        children = [c for c in children if c.info.run_id not in lost]
        trial_ids = [c.data.tags["searcher.trial_id"] for c in children]
        assert len(children) == NUM_SAMPLES == len(set(trial_ids))  # the budget, no duplicates
        assert done_before <= set(trial_ids)
        for child in children:
            assert child.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.data.tags, steps)
    # The server kept it all in PostgreSQL: the parent and one run per trial.
    assert count_rows(tracking_db, "runs") == NUM_SAMPLES + 1 + len(lost)

    # One study in PostgreSQL, named after the search, went on: the baseline ran once.
    (summary,) = optuna.get_all_study_summaries(study_db)
    study = optuna.load_study(study_name=summary.study_name, storage=study_db)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == NUM_SAMPLES
    # the trials asked when the driver died (Tune keeps one pending per slot: two here, as in
    # test_faults), and any lost one: FAIL, or PRUNED if it reported
    assert set(states) <= {"COMPLETE", "FAIL", "PRUNED"}
    assert len(states) - NUM_SAMPLES <= 2 + len(lost), (states, len(lost))
    assert sum(t.params == BASELINE for t in study.trials) == 1
    record = study.user_attrs[RECORD_ATTR]
    assert record["finished"] and record["parent_run_id"] == parents[0].info.run_id
    # Nothing of the search's state was ever a local file: no journal, no search file anywhere.
    assert not list(tmp_path.rglob(SEARCH_FILE)) and not list(tmp_path.rglob(STUDY_FILE))
    assert (shared / "ray" / summary.study_name / "leaderboard.txt").is_file()


def test_the_study_and_its_record_resume_through_the_database_alone(postgres, tmp_path):
    """No Ray: what a new head gets back from the database is the study the old one asked and
    told, and the record `--resume` needs; the searcher Tune pickles reconnects by its URL."""
    from searcher.spec.space import load_space
    from searcher.tune.state import SearchState
    from searcher.tune.study_searcher import StudySearcher
    from searcher.tune.tuner import make_study

    study_db = postgres("optuna")
    (tmp_path / "tiny.py").write_text(SPACE)
    space = load_space(tmp_path / "tiny.py", {"study_storage": study_db,
                                              "storage_path": str(tmp_path / "ray")})
    state = SearchState(tmp_path / "old-head" / "tiny-20300101-000000-abcd", study_db)
    study = make_study(space, state.folder, (), state.database)
    state.write_record({"parent_run_id": "p1", "tune_path": "somewhere", "created": 1.0,
                        "settings": space.settings.to_dict()})
    searcher = StudySearcher(study, space.sample, lambda params: None, "val_acc", "max", 2)
    first = searcher.suggest("t1")
    assert first == {**BASELINE, **first}  # the queued baseline comes first
    searcher.on_trial_complete("t1", {"val_acc": 0.5, "epoch": 2})
    searcher.suggest("t2")
    searcher.save(str(tmp_path / "searcher.pkl"))  # what Tune keeps on the shared storage

    found = find_resumable(space.settings, "tiny", None)  # from here, with no local files
    assert found.name == state.name and found.database == study_db
    assert found.folder.parent == tmp_path / "ray"  # this machine's outputs go there
    assert found.read_record()["parent_run_id"] == "p1"
    restored = StudySearcher(study, space.sample, lambda params: None, "val_acc", "max", 2)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t2", {"val_acc": 0.7, "epoch": 2})
    restored.suggest("t3")
    again = found.load_study()
    assert [t.state.name for t in again.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert [t.value for t in again.trials[:2]] == [0.5, 0.7]
    found.mark_finished()
    with pytest.raises(UserError, match="no unfinished search of tiny"):
        find_resumable(space.settings, "tiny", None)
    assert find_resumable(space.settings, "tiny", state.name).name == state.name  # by name
    assert not list(tmp_path.rglob(SEARCH_FILE)) and not list(tmp_path.rglob(STUDY_FILE))


def test_resume_says_what_the_database_lacks(postgres, tmp_path):
    settings = make_settings({"study_storage": postgres("optuna"),
                              "storage_path": str(tmp_path / "ray")})
    with pytest.raises(UserError, match="no unfinished search of tiny in the study database"):
        find_resumable(settings, "tiny", None)
    with pytest.raises(UserError, match="no search 'tiny-2020' in the study database"):
        find_resumable(settings, "tiny", str(tmp_path / "tiny-2020"))


def test_an_unreachable_study_database_is_one_line(postgres_server, tmp_path):
    settings = make_settings({"study_storage": "postgresql://searcher@127.0.0.1:1/optuna"})
    with pytest.raises(UserError, match="cannot open the study database") as caught:
        find_resumable(settings, "tiny", None)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_an_unreachable_study_database_stops_the_cli_before_anything(tmp_path, resume):
    space = tmp_path / "tiny.py"
    space.write_text("def space(trial):\n    trial.suggest_int('stages', 1, 2)\n")
    out = subprocess.run(
        [sys.executable, "-m", "searcher.run", str(space), *resume,
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
         "--study-storage", "postgresql://searcher@127.0.0.1:1/optuna"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env())
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("python -m searcher.run: error: cannot open the study database")
    assert not (tmp_path / "ray_results").exists()  # no search started
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_password_in_the_study_url_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="PGPASSWORD"):
        make_settings({"study_storage": "postgresql://searcher:secret@db:5432/optuna"})
    with pytest.raises(SettingsError, match="database URL"):
        make_settings({"study_storage": "optuna.db"})
    assert make_settings({"study_storage": "postgresql://searcher@db:5432/optuna"})


def test_the_outbox_in_the_database_outlives_its_driver_search_by_search(postgres, tmp_path):
    database = postgres("optuna")
    mine = open_outbox(tmp_path / "head" / "tiny-a", database)
    other = open_outbox(tmp_path / "head" / "tiny-b", database)
    ops = [{"op": "metrics", "trial": "t", "what": f"epoch {e}", "epoch": e,
            "metrics": [["val_acc", e / 10, 0, e]]} for e in (1, 2, 3, 4)]
    for op in ops:
        mine.append(op)
    other.append({"op": "create", "trial": "u", "what": "u's run", "name": "u", "tags": {},
                  "params": []})
    assert count_rows(database, "searcher_outbox") == 5  # committed: another connection sees them
    mine.ack([ops[0]["seq"], ops[2]["seq"]])
    # The head is lost: a driver elsewhere, in another working folder, opens the same search.
    again = open_outbox(tmp_path / "elsewhere" / "tiny-a", database)
    assert [op["what"] for op in again.pending()] == ["epoch 2", "epoch 4"]
    again.append({"op": "close", "trial": "t", "what": "t's outcome", "status": "FINISHED",
                  "metrics": [], "tags": {}})  # numbered after them
    assert [op["what"] for op in again.pending()] == ["epoch 2", "epoch 4", "t's outcome"]
    again.clear()
    assert again.pending() == [] and mine.pending() == []
    theirs = open_outbox(tmp_path / "tiny-b", database).pending()
    assert [op["what"] for op in theirs] == ["u's run"]
    assert not list(tmp_path.rglob(OUTBOX_FILE))  # no file journal anywhere


def test_with_the_outbox_in_the_database_checkpoints_wait_beside_tune_s_experiment(postgres,
                                                                                  tmp_path):
    from ray import tune
    database = postgres("optuna")
    original = tmp_path / "shared" / "tiny-a" / "trial_1" / "checkpoint_000000"  # Tune's layout
    original.mkdir(parents=True)
    (original / "checkpoint.pt").write_bytes(b"weights")
    outbox = open_outbox(tmp_path / "head" / "tiny-a", database)
    op = {"op": "checkpoint", "trial": "t", "what": "t checkpoint",
          **outbox.stage(tune.Checkpoint.from_directory(str(original)), "t-1")}
    outbox.append(op)
    staged = tmp_path / "shared" / "tiny-a" / STAGE_FOLDER / "t-1"
    assert (staged / "checkpoint.pt").read_bytes() == b"weights"
    shutil.rmtree(tmp_path / "head", ignore_errors=True)  # the head's disk is lost...
    shutil.rmtree(original)  # ...and Tune went on to a better checkpoint
    again = open_outbox(tmp_path / "elsewhere" / "tiny-a", database)
    (owed,) = again.pending()
    assert again.source(owed) == str(staged)
    again.release(owed)
    assert not staged.exists()
