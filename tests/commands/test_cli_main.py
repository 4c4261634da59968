"""`searcher`: one command with subcommands. `list` reads a real SQLite MLflow store written the
way a search writes it; the other subcommands reach the same parsers as their `python -m` forms."""
from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric, RunTag

from searcher.commands import cli
from searcher.spec.space import load_space
from searcher.tracking import store as tracking
from searcher.tracking import tags
from searcher.tune import driver_lock
from searcher.tune.state import SearchState

SPACE = "def space(trial):\n    trial.suggest_int('stages', 1, 2)\n"


def python_m(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # wide enough that no help text wraps: the two names of a command wrap it differently
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "1000"})


def searcher(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return python_m("searcher", *args, cwd=cwd)


def logged_search(tmp_path: Path, uri: str, name: str, metric: str,
                  trials: list[tuple[float | None, str]], status: str | None,
                  settings: dict | None = None) -> str:
    """A search's parent run as `searcher run` starts it, and its trial runs as the trial logger
    writes them: each (best score or None while it runs, the nodes it trained on). `status`
    ends the parent run (None: it is still running)."""
    (tmp_path / f"{name}.py").write_text(SPACE + f"SETTINGS = {{'metric': {metric!r}}}\n")
    space = load_space(tmp_path / f"{name}.py", settings or {})
    client = tracking.connect(uri)
    parent = tracking.start_search_run(client, space, {})
    experiment = client.get_run(parent).info.experiment_id
    now = int(time.time() * 1000)
    for n, (best, nodes) in enumerate(trials):
        run = client.create_run(experiment, run_name=f"trial {n}", tags={
            tags.PARENT_TAG: parent, tags.ROLE_TAG: "trial", tags.TRIAL_ID_TAG: f"t_{n:05d}",
            tags.OUTCOME_TAG: "running"}).info.run_id
        client.log_batch(run, metrics=[Metric(metric, 0.5, now, 1)],
                         tags=[RunTag(tags.NODES_TAG, nodes)])
        if best is not None:  # its end: the trial logger's "close"
            client.log_batch(run, metrics=[Metric(tags.best_key(metric), best, now, 0)],
                             tags=[RunTag(tags.OUTCOME_TAG, "completed")])
            client.set_terminated(run, "FINISHED")
    # a confirmation retrain is a child of the search too, but no trial of it
    client.create_run(experiment, tags={tags.PARENT_TAG: parent, tags.ROLE_TAG: "confirm"})
    if status:
        client.set_terminated(parent, status)
    return parent


def listed(uri: str, *args: str) -> list[dict[str, str]]:
    """`searcher list`'s rows, each by its column's name."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["list", "--tracking-uri", uri, *args]) == 0
    header, *rows = [re.split(r"\s{2,}", line) for line in out.getvalue().strip().splitlines()]
    assert header == ["STARTED", "SPACE", "BY", "STATUS", "BEST", "TRIALS", "WHERE", "RUN"]
    return [dict(zip(header, row)) for row in rows]


def record_state(tmp_path: Path, name: str, parent: str, uri: str) -> Path:
    """The search's state in this folder, as `searcher run` leaves it for --resume."""
    folder = tmp_path / "ray_results" / f"{name}-20250101-000000-abcd"
    folder.mkdir(parents=True)
    SearchState(folder).write_record({"parent_run_id": parent, "tracking_uri": uri,
                                      "settings": {}, "created": time.time()})
    return folder


@pytest.mark.slow
def test_list_shows_each_search_with_status_best_trials_and_where(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = logged_search(tmp_path, uri, "tiny", "val_acc",
                         [(0.5, "n1"), (0.7, "n1,n2"), (None, "n2")], "FINISHED")
    killed = logged_search(tmp_path, uri, "lossy", "val_loss", [(0.9, "n1"), (0.4, "n1")],
                           "KILLED")
    record_state(tmp_path, "lossy", killed, uri)  # so `run --resume` goes on with it from here
    monkeypatch.chdir(tmp_path)
    newest, oldest = listed(uri)
    # newest first; val_loss is better low
    assert newest == {**newest, "RUN": killed, "SPACE": "lossy", "STATUS": "killed, resumable",
                      "BEST": "val_loss 0.4000", "TRIALS": "2", "WHERE": "local, 1 node"}
    # the trial runs are counted, not the retrain; the running trial has no best yet
    assert oldest == {**oldest, "RUN": done, "SPACE": "tiny", "STATUS": "finished",
                      "BEST": "val_acc 0.7000", "TRIALS": "3", "WHERE": "local, 2 nodes"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", newest["STARTED"])
    assert newest["BY"] == oldest["BY"] != "-"  # the user MLflow recorded: this machine's


@pytest.mark.slow
def test_list_shows_who_submitted_a_cluster_search_who_cancelled_it_and_where_it_ran(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = logged_search(tmp_path, uri, "tiny", "val_acc", [(0.5, "n1")], "KILLED",
                        {"submitter": "ann", "address": "10.0.0.10:6379"})
    tracking.connect(uri).set_tag(run, tags.CANCELLED_TAG, "cancelled by bob")
    (row,) = listed(uri)
    assert row == {**row, "BY": "ann", "STATUS": "cancelled by bob",
                   "WHERE": "10.0.0.10:6379, 1 node"}


@pytest.mark.slow
def test_a_running_search_is_resumable_once_its_driver_is_gone(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = logged_search(tmp_path, uri, "tiny", "val_acc", [(0.5, "n1")], None)
    folder = record_state(tmp_path, "tiny", parent, uri)
    monkeypatch.chdir(tmp_path)
    with driver_lock.hold(folder.name, folder):
        assert [row["STATUS"] for row in listed(uri)] == ["running"]
    # MLflow still says running (a driver killed outright ends no run), but nothing runs it
    assert [row["STATUS"] for row in listed(uri)] == ["running, resumable"]
    with driver_lock.hold(folder.name, folder):  # the question took no lock that stays
        pass


@pytest.mark.slow
def test_list_of_one_experiment_and_a_limit(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = logged_search(tmp_path, uri, "tiny", "val_acc", [(0.5, "n1")], "FINISHED")
    logged_search(tmp_path, uri, "tiny", "val_acc", [(0.6, "n1")], None)
    other = logged_search(tmp_path, uri, "lossy", "val_loss", [(0.4, "n1")], "FAILED")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list", "--tracking-uri", uri, "--experiment", "tiny", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "running" in out and "val_acc 0.6000" in out
    assert first not in out and other not in out
    assert "1 older search not shown" in out


@pytest.mark.slow
def test_list_of_an_empty_store_says_so_in_one_line(tmp_path):
    db = tmp_path / "none.db"
    out = searcher("list", "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1 and "no search" in out.stdout.lower()
    assert not db.exists()  # listing creates no store


def test_version_is_the_installed_package_version(tmp_path):
    out = searcher("--version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout.strip() == f"searcher {importlib.metadata.version('searcher')}"


def test_help_names_every_subcommand_and_imports_no_heavy_package(tmp_path):
    code = ("import sys; from searcher.commands import cli\n"
            "try: cli.main(['--help'])\n"
            "except SystemExit as e: assert e.code == 0\n"
            "heavy = {'ray', 'torch', 'mlflow', 'optuna'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in ("run", "promote", "predict", "ui", "bench", "list"):
        assert re.search(rf"^\s+{name}\s", out.stdout, re.MULTILINE), out.stdout


@pytest.mark.parametrize("args", [["frobnicate"], ["--frobnicate"], []])
def test_unknown_or_missing_subcommand_is_one_line_and_exit_status_2(tmp_path, args):
    out = searcher(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("searcher: error:"), out.stderr
    assert "frobnicate" in lines[0] or not args


def _options_section(help_text: str, prog: str) -> str:
    """A help text from its description on, naming its program PROG: the usage above it is
    aligned to the program's name."""
    return help_text[help_text.index("\n\n"):].replace(prog, "PROG")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "promote", "predict"])
def test_a_subcommand_describes_the_same_arguments_as_its_python_m_form(tmp_path, command):
    sub = searcher(command, "--help", cwd=tmp_path)
    module = python_m(f"searcher.{command}", "--help", cwd=tmp_path)
    assert sub.returncode == module.returncode == 0, sub.stderr + module.stderr
    assert sub.stdout.startswith(f"usage: searcher {command} ")
    assert module.stdout.startswith(f"usage: python -m searcher.{command} ")
    assert (_options_section(sub.stdout, f"searcher {command}")
            == _options_section(module.stdout, f"python -m searcher.{command}"))


def test_run_errors_name_the_form_used(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.py").write_text("X = 1\n")
    monkeypatch.chdir(tmp_path)
    # `searcher SPACE.py`, the form before subcommands, is `searcher run SPACE.py`
    for args in (["run", "bad.py"], ["bad.py"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
        assert exit_.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("searcher run: error:"), lines
        assert "no `space(trial)` function" in lines[0]


@pytest.mark.slow
def test_bench_help_reaches_the_benchmarks(tmp_path):
    out = searcher("bench", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "searcher.bench" in out.stdout and "--images" in out.stdout  # the engine benchmark's


def test_ui_on_a_tracking_server_points_at_its_own_ui(tmp_path, capsys):
    assert cli.main(["ui", "--tracking-uri", "https://alice:s3cret@mlflow.example.org:8443"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "https://alice:***@mlflow.example.org:8443" in out
    assert "s3cret" not in out


def test_ui_on_a_missing_local_store_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["ui"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("searcher ui: error:")
    assert str(tmp_path / "mlflow.db") in err
    assert not (tmp_path / "mlflow.db").exists()


def test_ui_on_the_local_store_serves_it_with_mlflow(tmp_path, monkeypatch):
    from searcher.commands import ui
    (tmp_path / "mlflow.db").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    command = ui.ui_command(None, "127.0.0.1", 5001)
    assert command[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert command[command.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert command[command.index("--port") + 1] == "5001"
