"""Two Ray nodes on this machine, a real MLflow server on loopback and shared storage in a folder:
trials land on both nodes and log over HTTP; a node that stops costs its trials a restart from their
last checkpoint elsewhere, and every trial still has one MLflow run with its whole history."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from conftest import BIN, RAY_ENV, free_port, kill_matching, ray_head, write_cifar
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.services, pytest.mark.long]  # real services and a search of its own

SPACE = textwrap.dedent('''
    SETTINGS = {"epochs": 4, "num_samples": 4, "grace_period": 4, "seed": 0}

    def space(trial):
        trial.suggest_int("stages", 2, 2)
        trial.suggest_categorical("filters", [16, 24])
        trial.suggest_float("lr", 0.01, 0.1, log=True)
        return {"batch_size": 64, "batch_norm": True}
''')


@pytest.fixture()
def cluster(tmp_path):
    """A head and a second node (its own resources), an MLflow server; all stopped afterwards."""
    mlflow_port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
        env=RAY_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with ray_head("rayc", "--num-cpus=1", "--resources", json.dumps({"head": 1})) as address:
            subprocess.run([str(BIN / "ray"), "start", f"--address={address}", "--num-cpus=1",
                            "--resources", json.dumps({"second": 1}), "--disable-usage-stats"],
                           check=True, capture_output=True, env=RAY_ENV, timeout=120)
            uri = f"http://127.0.0.1:{mlflow_port}"
            for _ in range(120):
                try:
                    if requests.get(uri + "/health", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.5)
            yield {"address": address, "uri": uri, "server": server}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
        server.wait()


def nodes(address: str) -> dict[str, str]:
    """Ray node id -> which node ("head" or "second"), from the cluster itself."""
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
            "print(json.dumps({n['NodeID']: ('head' if 'head' in n['Resources'] else 'second') "
            "for n in ray.nodes() if n['Alive']}))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=RAY_ENV,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def trial_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("twonode")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`searcher.role` = 'trial'")


def start_search(tmp_path: Path, cluster: dict, per_batch: int = 500) -> subprocess.Popen:
    """The search, on `per_batch` images per CIFAR batch file (more: longer epochs to act in)."""
    data = write_cifar(tmp_path / "data", per_batch=per_batch)
    space = tmp_path / "twonode.py"
    space.write_text(SPACE)
    return subprocess.Popen(
        [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
         "--tracking-uri", cluster["uri"], "--address", cluster["address"],
         "--storage-path", str(tmp_path / "shared")],
        cwd=tmp_path, env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_histories(client: MlflowClient, runs: list, epochs: int) -> None:
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, epochs + 1)), (run.data.tags, steps)
        assert client.list_artifacts(run.info.run_id, "checkpoint")


def test_trials_land_on_both_nodes_and_log_over_http(cluster, tmp_path):
    which = nodes(cluster["address"])
    assert sorted(which.values()) == ["head", "second"]
    driver = start_search(tmp_path, cluster)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:]
    client = MlflowClient(cluster["uri"])
    runs = trial_runs(client)
    assert len(runs) == 4
    used = {which[n] for r in runs for n in r.data.tags["searcher.nodes"].split(",")}
    assert used == {"head", "second"}  # from each trial's own report of its node
    check_histories(client, runs, 4)
    # artifacts went through the server into its artifact store, not to a local path
    assert any((tmp_path / "artifacts").rglob("checkpoint.pt"))


def test_a_node_that_stops_mid_search_costs_only_a_restart(cluster, tmp_path):
    which = nodes(cluster["address"])
    second = next(n for n, name in which.items() if name == "second")
    driver = start_search(tmp_path, cluster, per_batch=1000)  # the kill lands mid-trial
    client = MlflowClient(cluster["uri"])
    deadline = time.time() + 300
    victim = None
    while victim is None and time.time() < deadline:  # a trial with an epoch done on node two
        for run in trial_runs(client):
            if second in run.data.tags.get("searcher.nodes", "") and \
                    client.get_metric_history(run.info.run_id, "val_acc"):
                victim = run.data.tags["searcher.trial_id"]
        time.sleep(0.3)
    assert victim, "no trial reached the second node"
    kill_matching(f"--node_id={second}")  # node two's raylet: the node is gone, its workers too
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:]
    runs = trial_runs(client)
    assert len(runs) == 4 == len({r.data.tags["searcher.trial_id"] for r in runs})
    check_histories(client, runs, 4)
    moved = next(r for r in runs if r.data.tags["searcher.trial_id"] == victim)
    assert [which.get(n, "?") for n in moved.data.tags["searcher.nodes"].split(",")] == \
        ["second", "head"]
    assert int(moved.data.tags["searcher.resumed_from_epoch"]) >= 1  # from its checkpoint


def test_a_tracking_server_that_goes_away_does_not_stop_the_search(cluster, tmp_path):
    driver = start_search(tmp_path, cluster)
    client = MlflowClient(cluster["uri"])
    deadline = time.time() + 300
    while time.time() < deadline and not any(
            client.get_metric_history(r.info.run_id, "val_acc") for r in trial_runs(client)):
        time.sleep(0.3)
    os.killpg(cluster["server"].pid, 9)  # the server dies mid-search
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:]
    assert "MLflow did not accept" in out
    (folder,) = (tmp_path / "shared").glob("twonode-*")
    unlogged = (folder / "unlogged.txt").read_text().splitlines()
    assert any("metrics" in line for line in unlogged)
    assert "the search's summary" in unlogged[-1]
    board = (folder / "leaderboard.txt").read_text()
    assert board.count("completed") == 4  # every trial trained to the end regardless
