"""Credentials in URLs: refused in the study storage in any form, masked wherever a tracking URI
or a storage URL is shown, logged or stored (real files, a real sqlite MLflow store)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT
from mlflow.tracking import MlflowClient

from searcher.spec.settings import Settings
from searcher.tune.state import SEARCH_FILE, SearchState, study_database

pytestmark = pytest.mark.slow  # runs the command as a process

SPACE = textwrap.dedent('''
    def space(trial):
        trial.suggest_categorical("filters", [8, 16])
        return {"stages": 1}
''')
TRACKING = "http://searcher:s3cret-pw@mlflow.example:5000/?token=s3cret-tok"
SECRETS = ("s3cret-pw", "s3cret-tok")


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:pw@db/optuna", "postgresql://u:***@db/optuna"),
    ("postgresql://u@db/optuna?password=pw", "postgresql://u@db/optuna?password=***"),
    ("postgresql://db/optuna?sslmode=require&PassWord=pw&x=1",
     "postgresql://db/optuna?sslmode=require&PassWord=***&x=1"),
    ("mysql://db/o?passwd=pw", "mysql://db/o?passwd=***"),
    ("mssql://db/o?PWD=pw", "mssql://db/o?PWD=***"),
    ("postgresql://db/o?sslpassword=pw", "postgresql://db/o?sslpassword=***"),
    ("http://h:5000/?token=pw&secret=pw&key=pw&access_key=pw",
     "http://h:5000/?token=***&secret=***&key=***&access_key=***"),
    ("http://u:pw@h:5000", "http://u:***@h:5000"),
    # unescaped /, ?, #, @ and escaped % in a password: all of it masked
    ("postgresql://u:pa/ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:pa?ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:pa#ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql+psycopg://u:p%40s%2Fs@db:5432/x", "postgresql+psycopg://u:***@db:5432/x"),
    ("http://u:pa/ss@h:5000", "http://u:***@h:5000"),
    ("s3://bucket/a:b@c", "s3://bucket/a:b@c"),  # an @ in a path, no user part
    ("postgresql://u@db:5432/optuna", "postgresql://u@db:5432/optuna"),  # nothing secret
    ("sqlite:////tmp/keys/mlflow.db?timeout=5", "sqlite:////tmp/keys/mlflow.db?timeout=5"),
])
def test_redact_masks_every_secret_a_url_carries_and_nothing_else(url, shown):
    from searcher.redaction import credentials_in, redact
    assert redact(url) == shown
    assert bool(credentials_in(url)) == (url != shown)


@pytest.mark.parametrize("url", ["postgresql://searcher@db/optuna?password=pw",
                                 "postgresql://db/optuna?PASSWORD=pw",
                                 "postgresql://db/optuna?sslpassword=pw",
                                 "postgresql://searcher:pw@db/optuna"])
def test_a_study_storage_with_a_secret_is_refused_from_the_setting_and_the_environment(
        url, monkeypatch):
    from searcher.errors import UserError
    with pytest.raises(UserError, match="PGPASSWORD") as refused:
        study_database(Settings(study_storage=url))
    assert "=pw" not in str(refused.value) and ":pw@" not in str(refused.value)
    monkeypatch.setenv("SEARCHER_STUDY_STORAGE", url)
    with pytest.raises(UserError, match="PGPASSWORD"):
        study_database(Settings())


def test_a_password_query_in_study_storage_is_refused_in_one_line_before_anything_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "tiny.py").write_text(SPACE)
    done = subprocess.run(
        [sys.executable, "-m", "searcher.run", "tiny.py", "--data-dir", str(work / "none"),
         "--study-storage", f"sqlite:///{work / 'optuna.db'}?password=hunter2"],
        cwd=work, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode != 0
    said = (done.stdout + done.stderr).strip().splitlines()
    assert len(said) == 1 and "password" in said[0] and "hunter2" not in said[0], said
    assert sorted(p.name for p in work.iterdir()) == ["tiny.py"]  # no store, no Tune state


def test_the_search_record_keeps_no_secret(tmp_path):
    state = SearchState(tmp_path)
    settings = {**Settings().to_dict(), "tracking_uri": TRACKING}
    state.write_record({"parent_run_id": "p", "tracking_uri": TRACKING, "settings": settings})
    text = (tmp_path / SEARCH_FILE).read_text()
    assert not any(s in text for s in SECRETS)
    record = json.loads(text)
    assert record["tracking_uri"] == "http://searcher:***@mlflow.example:5000/?token=***"
    assert record["settings"]["tracking_uri"] == record["tracking_uri"]
    state.mark_finished()  # a rewrite keeps it so
    assert not any(s in (tmp_path / SEARCH_FILE).read_text() for s in SECRETS)


def test_the_parent_run_and_the_closing_lines_keep_no_secret(tmp_path, tiny_cifar):
    from searcher.spec.space import load_space
    from searcher.tracking import store as tracking
    (tmp_path / "tiny.py").write_text(SPACE)
    space = load_space(tmp_path / "tiny.py", {"tracking_uri": TRACKING,
                                              "data_dir": str(tiny_cifar)})
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracking.start_search_run(client, space, {})
    shown = [json.dumps(client.get_run(run_id).data.params),
             open(client.download_artifacts(run_id, "settings.json", str(tmp_path))).read(),
             tracking.describe_store(TRACKING),
             *tracking.how_to_browse(TRACKING, "1", run_id, "tiny", "data")]
    leaks = [text for text in shown if any(s in text for s in SECRETS)]
    assert not leaks


def test_resuming_a_search_whose_record_masked_the_secret_asks_for_the_uri_again(tmp_path,
                                                                                 capsys):
    from searcher.commands.run import main
    (tmp_path / "tiny.py").write_text(SPACE)
    folder = tmp_path / "tiny-20261203-000000-abcd"
    folder.mkdir()
    uri = "http://searcher:s3cret-pw@127.0.0.1:9/"  # loopback, where nothing answers
    settings = {**Settings().to_dict(), "tracking_uri": uri}
    SearchState(folder).write_record({"parent_run_id": "p", "tracking_uri": uri,
                                      "settings": settings})
    with pytest.raises(SystemExit) as exit_:  # not a connection with the password "***"
        main([str(tmp_path / "tiny.py"), "--resume", str(folder)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass it again with --tracking-uri" in err[0], err
    assert not any(s in err[0] for s in SECRETS)
