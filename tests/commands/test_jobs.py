"""`searcher submit/status/logs/cancel/resume`: a shared cluster driven through its jobs API.

Bad input ends in one line without Ray; then a real Ray head of the test's own, with the jobs API
and token authentication, runs a tiny search submitted as a user would, from a project folder.
Cancel and resume, and searches sharing a cluster, are walked on namespace hosts
(tests/cluster/test_cluster_hosts.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, ROOT, free_port, ray_head, resumable_space, write_cifar

from searcher.commands import cli
from searcher.commands.status import progress
from searcher.spec.settings import Settings
from searcher.tune.progress import Progress, format_line

TOKEN = "searcher-test-token-" + "0" * 20
USER = "ann"


def _fails(argv: list[str], capsys) -> str:
    """The one line `searcher ARGV` ends with, exit status 2."""
    with pytest.raises(SystemExit) as ended:
        cli.main(argv)
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("command", ["status", "logs x", "cancel x", "resume x"])
def test_no_cluster_is_one_line(command, capsys, monkeypatch):
    monkeypatch.delenv("SEARCHER_CLUSTER", raising=False)
    assert "no cluster given" in _fails(command.split(), capsys)


def test_a_cluster_that_does_not_answer_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("SEARCHER_CLUSTER", f"http://127.0.0.1:{free_port()}")
    assert "does not answer" in _fails(["status"], capsys)
    assert "give the jobs API's address" in _fails(["cancel", "x", "--cluster", "nowhere"],
                                                   capsys)
    assert "no such cluster config" in _fails(["logs", "x", "--cluster", "gone.yaml"], capsys)


def test_submit_refuses_a_space_outside_the_project_and_a_secret(tmp_path, capsys, monkeypatch):
    space = tmp_path / "tiny.py"
    space.write_text(resumable_space(1, 1))
    monkeypatch.chdir(ROOT)
    cluster = ["--cluster", f"http://127.0.0.1:{free_port()}"]
    assert "outside this project folder" in _fails(["submit", str(space), *cluster], capsys)
    monkeypatch.chdir(tmp_path)
    line = _fails(["submit", "tiny.py", "--tracking-uri", "http://u:hunter2@h:5000", *cluster],
                  capsys)
    assert "carries a password" in line and "hunter2" not in line


def test_progress_reads_the_drivers_line():
    s = Settings(num_samples=96, time_budget_s=240)
    line = format_line(Progress(180, 32, 14, 28, 0, 0.575, "12bc78ff", 59), s)
    assert progress(f"noise\n{line}\nmore noise\n") == {"done": "42/96", "running": "32",
                                                         "best": "val_acc 0.5750"}
    assert progress("nothing yet") == {"done": "-", "running": "-", "best": "-"}
    closing = f"{line}\n\nSearch finished (tpe sampler): 44 trials in 4.0 min (0 failed); ..."
    assert progress(closing)["done"] == "44" and progress(closing)["running"] == "0"


# -------------------------------------------------------------------- a real cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head with the jobs API and token authentication; its jobs API's address."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # a job's `python`: ours
    with ray_head("rayjobs", "--num-cpus=2", "--include-dashboard=true",
                  f"--dashboard-port={port}", f"--dashboard-agent-listen-port={free_port()}",
                  env=env):
        yield f"http://127.0.0.1:{port}"


def _project(folder: Path) -> Path:
    """A project folder as a user submits from: the package, .rayignore, a space file."""
    shutil.copytree(ROOT / "searcher", folder / "searcher",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".rayignore", folder)
    (folder / "spaces").mkdir()
    (folder / "spaces" / "resumable.py").write_text(resumable_space(2, 2))
    return folder


def _searcher(project: Path, address: str, *argv: str, token: str = TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_TOKEN=token, SEARCHER_CLUSTER=address, MLFLOW_TRACKING_USERNAME=USER)
    return subprocess.run([sys.executable, "-m", "searcher", *argv], cwd=project, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.services
@pytest.mark.long
def test_a_search_submitted_followed_and_finished(cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    project = _project(tmp_path / "project")
    data = write_cifar(tmp_path / "data", per_batch=200)
    started = time.monotonic()
    submitted = _searcher(project, cluster, "submit", "spaces/resumable.py", "--data-dir",
                          str(data), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                          "--storage-path", str(tmp_path / "ray"), "--priority", "2")
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    search = submitted.stdout.splitlines()[0]
    assert search.startswith("resumable-") and f"searcher logs {search} --follow" in \
        submitted.stdout

    jobs_api = JobSubmissionClient(cluster, headers={"Authorization": f"Bearer {TOKEN}"})
    job = jobs_api.get_job_info(search)
    assert job.metadata == {"searcher.search": search, "searcher.submitter": USER,
                            "searcher.space": "spaces/resumable.py"}
    assert f"--name {search} --submitter {USER}" in job.entrypoint
    assert "--priority 2.0" in job.entrypoint and TOKEN not in str(job)

    listed = _searcher(project, cluster, "status")
    assert listed.returncode == 0, listed.stderr[-2000:]
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith(search)]
    assert row[1] in ("queued", "running") and row[2] == USER, listed.stdout

    deadline = time.monotonic() + 180
    while str(jobs_api.get_job_status(search)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, "the search did not end"
        time.sleep(1)
    ran_s = time.monotonic() - started
    assert str(jobs_api.get_job_status(search)) == "SUCCEEDED", jobs_api.get_job_logs(search)

    shown = _searcher(project, cluster, "status", search)
    assert shown.returncode == 0, shown.stderr[-2000:]
    row = shown.stdout.splitlines()[1].split()
    assert row[:3] == [search, "finished", USER] and row[6:8] == ["2", "0"], shown.stdout
    assert row[8] == "val_acc" and 0 <= float(row[9]) <= 1, shown.stdout

    logs = _searcher(project, cluster, "logs", search)
    assert logs.returncode == 0, logs.stderr[-2000:]
    assert logs.stdout.startswith(f"===== {search} (succeeded) =====\n")
    assert "[searcher] " in logs.stdout and "Search finished" in logs.stdout

    for argv, why in ((["status", search + "x"], "no search"),
                      (["logs", "resumable-20000101-000000-beef"], "no search"),
                      (["resume", search], "has finished"),
                      (["cancel", search], "is not running")):
        done = _searcher(project, cluster, *argv)
        assert done.returncode == 2 and why in done.stderr, (argv, done.stderr[-2000:])
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    refused = _searcher(project, cluster, "status", token="not-the-token")
    assert refused.returncode == 2 and "refused Ray's token (403)" in refused.stderr, \
        refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    print(f"search ran in {ran_s:.0f} s", file=sys.stderr)
