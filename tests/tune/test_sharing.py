"""Three searches share one Ray cluster (a head of its own with 4 trial slots), each driver a
process of its own as a job's would be: A runs alone on every slot; B, of the same weight, gets
half as A's trials end (none is stopped for it); P, of twice the weight, gets twice as much as
each of them; then each is cancelled (saved, as after a Ctrl-C) and leaves the cluster's shares;
its parent run says who cancelled it, and no trial ran twice. (The cluster walk,
tests/cluster/test_cluster_hosts.py, does the same through `searcher submit` and goes on to
resume and finish.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RAY_ENV, ray_head, resumable_space, runs_with_role, write_cifar
from mlflow.tracking import MlflowClient

from searcher.tracking.tags import CANCELLED_TAG, TRIAL_ID_TAG
from searcher.tune.state import new_search_name

pytestmark = [pytest.mark.services, pytest.mark.long]

SLOTS, EPOCHS = 4, 4  # a trial takes about 10 s here: long enough for the shares to show
SAMPLES = {"a": 24, "b": 12, "p": 10}
WEIGHTS = {"a": 1.0, "b": 1.0, "p": 2.0}


def _view(address: str) -> dict:
    """The cluster's broker, as `searcher status` reads it."""
    done = subprocess.run([sys.executable, "-m", "searcher.tune.sharing", "view"],
                          env={**RAY_ENV, "RAY_ADDRESS": address}, capture_output=True,
                          text=True, timeout=120)
    line = next(x for x in done.stdout.splitlines() if x.startswith("SEARCHER-VIEW "))
    return json.loads(line.split(" ", 1)[1])


def _until(address: str, what, limit_s: float = 240.0) -> dict:
    """The broker's view once `what(slots held by each search)` has held at some moment (the
    broker keeps every change, so a moment between two looks is not missed)."""
    deadline = time.monotonic() + limit_s
    while True:
        view = _view(address)
        if any(what(held) for _, held in view["timeline"]):
            return view
        assert time.monotonic() < deadline, f"never came: {view['timeline'][-10:]}"
        time.sleep(1.0)


def test_searches_share_the_slots_by_weight_and_cancel_resumably(tmp_path):
    data = write_cifar(tmp_path / "data", per_batch=600)
    names, drivers, uris = {}, {}, {}
    with ray_head("rays", f"--num-cpus={SLOTS}") as address:
        def start(key: str) -> subprocess.Popen:
            space = tmp_path / key / "resumable.py"
            space.parent.mkdir()
            space.write_text(resumable_space(EPOCHS, SAMPLES[key]))
            uris[key] = f"sqlite:///{tmp_path / key / 'mlflow.db'}"
            names[key] = new_search_name("resumable")
            args = [sys.executable, "-m", "searcher.run", str(space), "--data-dir", str(data),
                    "--tracking-uri", uris[key], "--storage-path", str(tmp_path / key / "ray"),
                    "--address", address, "--submitter", f"user-{key}",
                    "--priority", str(WEIGHTS[key]), "--name", names[key]]
            return subprocess.Popen(args, cwd=tmp_path / key, env=RAY_ENV, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)

        drivers["a"] = start("a")
        _until(address, lambda held: held.get(names["a"]) == SLOTS)
        drivers["b"] = start("b")
        _until(address, lambda held: held.get(names["a"]) == 2 and held.get(names["b"]) == 2)
        drivers["p"] = start("p")
        shared = _until(address, lambda held: (held.get(names["p"]), held.get(names["a"]),
                                                held.get(names["b"])) == (2, 1, 1))
        print_timeline(shared, names)

        # each is cancelled as `searcher cancel` does it: saved as after a Ctrl-C, resumable
        for key, driver in drivers.items():
            cancel = subprocess.run([sys.executable, "-m", "searcher.tune.sharing", "cancel",
                                     names[key], f"user-{key}"],
                                    env={**RAY_ENV, "RAY_ADDRESS": address}, capture_output=True,
                                    text=True, timeout=120)
            assert '"cancelled": true' in cancel.stdout, cancel.stdout + cancel.stderr
        for key, driver in drivers.items():
            out, _ = driver.communicate(timeout=240)
            assert driver.returncode == 130, out[-3000:]
            assert f"cancelled by user-{key}: the search is saved" in out, out[-3000:]
        final = _view(address)

    assert final["ended"] == {names[k]: f"cancelled by user-{k}" for k in SAMPLES}
    assert final["searches"] == {}  # every driver left: nothing held
    for key in SAMPLES:
        client = MlflowClient(uris[key])
        (parent,) = runs_with_role(client, "search")
        assert parent.info.status == "KILLED" and parent.info.user_id == f"user-{key}"
        assert parent.data.tags[CANCELLED_TAG] == f"cancelled by user-{key}"
        trials = runs_with_role(client, "trial")
        ids = [t.data.tags[TRIAL_ID_TAG] for t in trials]
        assert len(ids) == len(set(ids)), (key, sorted(ids))  # none ran twice
        assert all(t.info.user_id == f"user-{key}" for t in trials)


def print_timeline(view: dict, names: dict[str, str]) -> None:
    """Slots held over time by each search, for -s and a failure's report."""
    short = {v: k.upper() for k, v in names.items()}
    start = view["timeline"][0][0]
    for t, held in view["timeline"]:
        print(f"slots at {t - start:6.1f} s: " + "  ".join(
            f"{short.get(s, s)}={n}" for s, n in sorted(held.items(), key=lambda x: short.get(
                x[0], x[0]))), file=sys.stderr)
